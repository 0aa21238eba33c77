#!/usr/bin/env bash
# The whole test suite: unit, integration, crash, fault-injection, property and doc tests of
# every crate in the workspace. Extra suites (e.g. API property tests against a live server)
# hook in through tests.d/*.sh, each of which must exit non-zero on failure.
# It does its own set-up first (tests.d/setup/*.sh: idempotent, project-local, pinned), so a
# fresh clone on a machine where nothing was installed by hand gets a green run.
set -euo pipefail
cd "$(dirname "$0")"
for f in tests.d/setup/*.sh; do
  [ -e "$f" ] || continue
  bash "$f"
done
cargo test --workspace --release
for f in tests.d/*.sh; do
  [ -e "$f" ] || continue
  echo "== $f"
  bash "$f"
done
