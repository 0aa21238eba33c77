#!/usr/bin/env bash
# PostgreSQL for the tests of crates/amberdb-postgres (a real server each test starts in a
# temporary directory: amberdb_postgres::testing::TempPostgres). Run by ./test.sh before any
# test. Idempotent: nothing is done when Debian's server binaries are already there.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null && id postgres >/dev/null 2>&1; then
  exit 0
fi
echo "== set-up: Debian's postgresql package"
if [ "$(id -u)" != 0 ]; then
  echo "tests.d/setup: PostgreSQL is missing and installing it needs root (apt-get install postgresql)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package starts a cluster of its own; the tests start theirs and need none.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version name _; do
    pg_ctlcluster "$version" "$name" stop 2>/dev/null || true
  done
fi
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || {
  echo "tests.d/setup: postgresql installed but no pg_ctl under /usr/lib/postgresql" >&2
  exit 1
}
