#!/usr/bin/env bash
# The whole test suite: set-up and build first (a no-op when done), then ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --no-quickstart
ctest --test-dir "${FTHOST_BUILD_DIR:-$ROOT/build}" -j "${FTHOST_JOBS:-2}" --output-on-failure
