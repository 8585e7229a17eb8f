#!/usr/bin/env bash
# Fresh machine -> ready: system packages, LibTorch (from the PyPI torch wheel, cached
# under ~/.cache/fthost), the build; then the quickstart unless --no-quickstart.
# Idempotent: a second run checks, finds everything in place and only rebuilds what changed.
set -euo pipefail

TORCH_VERSION=2.11.0            # CUDA 13.0 build on PyPI; must match the GPU machine's
CACHE_DIR="${FTHOST_CACHE:-$HOME/.cache/fthost}"
TORCH_VENV="$CACHE_DIR/torch-$TORCH_VERSION"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${FTHOST_BUILD_DIR:-$ROOT/build}"
RUN_QUICKSTART=1
for arg in "$@"; do
  case "$arg" in
    --no-quickstart) RUN_QUICKSTART=0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[setup] $*"; }

# nvcc, when the CUDA toolkit is installed, decides whether CUDA code is compiled.
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"

# 1. Debian packages (only when one is missing: apt-get update is slow).
PACKAGES=(build-essential cmake ninja-build ccache git python3 python3-venv
          libboost-dev libboost-program-options-dev libtomlplusplus-dev
          nlohmann-json3-dev libgtest-dev pkg-config libpcre2-dev libutf8proc-dev libsentencepiece-dev
          libgloo-dev procps)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# 2. LibTorch from the torch wheel, in a virtual environment outside the repo.
if [ ! -f "$TORCH_VENV/.complete" ]; then
  log "installing torch==$TORCH_VERSION into $TORCH_VENV (once; a few GB)"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/pip" install --quiet --progress-bar off "torch==$TORCH_VERSION"
  touch "$TORCH_VENV/.complete"
else
  log "LibTorch $TORCH_VERSION cached in $TORCH_VENV"
fi
TORCH_CMAKE="$("$TORCH_VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"

# 3. Configure (once) and build.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  log "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" | grep -E "^-- fthost:" || true
fi
# ccache keys on paths relative to the checkout, so a fresh clone reuses earlier builds.
export CCACHE_BASEDIR="$ROOT"
log "building (ninja -j${FTHOST_JOBS:-2})"
cmake --build "$BUILD_DIR" -j "${FTHOST_JOBS:-2}"
if grep -q "^FTHOST_WITH_CUDA:INTERNAL=ON" "$BUILD_DIR/CMakeCache.txt"; then
  log "build mode: CUDA (kernels/ CUDA code is compiled)"
else
  log "build mode: CPU-only ($(grep '^FTHOST_CPU_ONLY_REASON:INTERNAL=' "$BUILD_DIR/CMakeCache.txt" | cut -d= -f2-))"
fi

# 4. The quickstart.
if ((RUN_QUICKSTART)); then
  cd "$ROOT"
  rm -rf runs/quickstart
  log "running: fthost run configs/quickstart.toml"
  "$BUILD_DIR/fthost" run configs/quickstart.toml
fi
