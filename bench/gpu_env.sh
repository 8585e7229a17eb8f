# Sourced by the GPU scripts (bench/gpu_train.sh, bench/gpu_nf4.sh) on the lent GPU
# machine, after ROOT is set. That machine has a compiler, CMake, Ninja and PyTorch but
# no network and none of the libraries fthost's build needs; scripts/fetch_debs.sh
# downloads them here as .deb files (into shared/debs, carried with the run). They are
# unpacked with `dpkg -x` into a private prefix, never installed into / (the device
# notes warn that unpacking there can break the machine), and CMake and pkg-config are
# pointed at it. The built binaries find those libraries through their build RPATH.
#
# Sets FTHOST_CMAKE_ARGS (an array: the configure options the prefix needs, and torch's
# CMake package) and prints the machine's GPU.

FTHOST_DEBS="${FTHOST_DEBS:-$ROOT/shared/debs}"
FTHOST_SYSROOT="${FTHOST_SYSROOT:-/tmp/fthost-sysroot}"
FTHOST_CMAKE_ARGS=(-DCMAKE_PREFIX_PATH="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')")

if ls "$FTHOST_DEBS"/*.deb >/dev/null 2>&1; then
  if [ ! -f "$FTHOST_SYSROOT/.unpacked" ]; then
    mkdir -p "$FTHOST_SYSROOT"
    for deb in "$FTHOST_DEBS"/*.deb; do dpkg -x "$deb" "$FTHOST_SYSROOT"; done
    touch "$FTHOST_SYSROOT/.unpacked"
  fi
  multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  libdir="$FTHOST_SYSROOT/usr/lib/$multiarch"
  # Only the prefix's .pc files, their paths rebased into it.
  export PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$FTHOST_SYSROOT/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$FTHOST_SYSROOT"
  FTHOST_CMAKE_ARGS=(-DCMAKE_PREFIX_PATH="$FTHOST_SYSROOT/usr;${FTHOST_CMAKE_ARGS[0]#-DCMAKE_PREFIX_PATH=}")
  # The carried pkgconf with its library from the prefix (CMake would otherwise pick the
  # prefix's binary without it, or the machine's, if any, with other defaults).
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s/usr/bin/pkgconf" "$@"\n' "$libdir" "$FTHOST_SYSROOT" \
    >"$FTHOST_SYSROOT/pkg-config"
  chmod +x "$FTHOST_SYSROOT/pkg-config"
  FTHOST_CMAKE_ARGS+=(-DPKG_CONFIG_EXECUTABLE="$FTHOST_SYSROOT/pkg-config")
  echo "libraries: $(ls "$FTHOST_DEBS"/*.deb | wc -l) carried packages unpacked in $FTHOST_SYSROOT"
else
  echo "libraries: no .deb files in $FTHOST_DEBS; using the machine's own (scripts/fetch_debs.sh fills it)"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
