#!/usr/bin/env bash
# The whole test suite: set-up and build first (a no-op when done), then ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# FTHOST_SANITIZE=1: the suite under ASan + UBSan instead (scripts/sanitize.sh, docs/TESTING.md).
if [ "${FTHOST_SANITIZE:-0}" = "1" ]; then exec bash "$ROOT/scripts/sanitize.sh"; fi
bash "$ROOT/scripts/setup.sh" --no-quickstart
ctest --test-dir "${FTHOST_BUILD_DIR:-$ROOT/build}" -j "${FTHOST_JOBS:-2}" --output-on-failure
