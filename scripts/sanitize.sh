#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (docs/TESTING.md):
# configures $FTHOST_ASAN_DIR (default build-asan/) with clang (-fsanitize=address,undefined
# -fno-omit-frame-pointer -fno-sanitize-recover=undefined on host, plugins, kernels and
# tests; LibTorch itself is not instrumented), builds it and runs ctest there with the
# sanitizer options and suppressions of tests/sanitize/. Any report fails the test it
# happens in. The same build carries the fuzz targets (scripts/fuzz.sh).
#
#   bash scripts/sanitize.sh                  # configure, build, ctest (without the `recipes` label)
#   bash scripts/sanitize.sh --build-only     # configure and build
#   bash scripts/sanitize.sh -R Graders       # extra arguments go to ctest
#   FTHOST_SANITIZE_RECIPES=1 ...             # also the ~6-minute `recipes` test (20+ minutes here)
#   source scripts/sanitize.sh --env          # only export the sanitizer options (to run a binary by hand)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FTHOST_ASAN_DIR:-$ROOT/build-asan}"
JOBS="${FTHOST_JOBS:-2}"
LOCK="${FTHOST_BUILD_LOCK:-/tmp/fthost-build.lock}"
CACHE_DIR="${FTHOST_CACHE:-$HOME/.cache/fthost}"
TORCH_VENV="$CACHE_DIR/torch-2.11.0"
SUPP="$ROOT/tests/sanitize"

# detect_leaks stays on: a one-time allocation of LibTorch or a system library left
# unreachable at exit would be suppressed by name in lsan.supp, with its reason; none is
# needed today (docs/TESTING.md).
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:suppressions=$SUPP/asan.supp${FTHOST_ASAN_EXTRA:+:$FTHOST_ASAN_EXTRA}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$SUPP/ubsan.supp"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
command -v llvm-symbolizer >/dev/null && export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"
[ "${1:-}" = "--env" ] && return 0 2>/dev/null

log() { echo "[sanitize] $*"; }

BUILD_ONLY=0
if [ "${1:-}" = "--build-only" ]; then BUILD_ONLY=1; shift; fi

# A fresh machine: the packages and LibTorch setup.sh installs, and clang (libFuzzer, the
# sanitizer runtimes) with llvm-symbolizer.
if [ ! -f "$TORCH_VENV/.complete" ]; then
  log "LibTorch is not set up: running scripts/setup.sh --no-quickstart first"
  bash "$ROOT/scripts/setup.sh" --no-quickstart
fi
if [ ! -x /usr/bin/clang++ ] || ! command -v llvm-symbolizer >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing clang and llvm (Debian)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang llvm >/dev/null
  export ASAN_SYMBOLIZER_PATH="$(command -v llvm-symbolizer)"
fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  TORCH_CMAKE="$("$TORCH_VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
  log "configuring $BUILD (clang, ASan + UBSan, fuzz targets, CPU-only)"
  # CPU-only: CUDA code cannot run under ASan here (and nvcc would compile it with gcc).
  flock "$LOCK" cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=/usr/bin/clang -DCMAKE_CXX_COMPILER=/usr/bin/clang++ -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" \
    -DFTHOST_SANITIZE=ON -DFTHOST_FUZZ=ON -DFTHOST_ENABLE_CUDA=OFF | grep -E "^-- fthost:" || true
fi
export CCACHE_BASEDIR="$ROOT"
log "building $BUILD (-j$JOBS, under $LOCK)"
flock "$LOCK" nice -n 10 cmake --build "$BUILD" -j "$JOBS" --target all
((BUILD_ONLY)) && exit 0

LABELS=(-LE recipes)
[ "${FTHOST_SANITIZE_RECIPES:-0}" = "1" ] && LABELS=()
log "ctest in $BUILD (nice -n 19)"
cd "$BUILD"
start=$(date +%s)
status=0
nice -n 19 ctest --test-dir "$BUILD" -j "$JOBS" --output-on-failure "${LABELS[@]}" "$@" || status=$?
log "ctest finished in $(( $(date +%s) - start )) s (exit $status)"
exit $status
