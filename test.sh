#!/usr/bin/env bash
# The whole test suite: unit, integration, crash, fault-injection, property and doc tests of
# every crate in the workspace. Extra suites (e.g. API property tests against a live server)
# hook in through tests.d/*.sh, each of which must exit non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --release
for f in tests.d/*.sh; do
  [ -e "$f" ] || continue
  echo "== $f"
  bash "$f"
done
