#!/usr/bin/env bash
# schemathesis: property-based testing of the server's OpenAPI document (tests.d/schemathesis.sh).
# Pinned so a new release cannot change what CI checks; installed into a venv under target/
# so it never touches the system Python.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/schemathesis-venv
if [ ! -x "$VENV/bin/schemathesis" ] || ! "$VENV/bin/schemathesis" --version | grep -q "4.32.5"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
"$VENV/bin/schemathesis" --version
