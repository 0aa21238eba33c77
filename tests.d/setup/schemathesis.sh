#!/usr/bin/env bash
# schemathesis: property-based testing of the server's OpenAPI document (tests.d/schemathesis.sh).
# Run by ./test.sh before any test, so a fresh clone on a machine where nothing was installed by
# hand gets a green run. Idempotent: a venv that already has the pinned version is left alone.
# Pinned so a new release cannot change what the tests check; installed into a project-local
# venv under target/ so it never touches the system Python (and `cargo clean` removes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=4.32.5
VENV=target/schemathesis-venv
if "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $VERSION\$"; then
  exit 0
fi
command -v python3 >/dev/null || { echo "tests.d/setup: python3 is needed for schemathesis" >&2; exit 1; }
echo "== set-up: schemathesis $VERSION into $VENV"
rm -rf "$VENV"
mkdir -p target
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$VENV/bin/schemathesis" --version | grep -q "version $VERSION\$" || {
  echo "tests.d/setup: schemathesis $VERSION did not install into $VENV" >&2
  exit 1
}
