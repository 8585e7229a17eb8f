#!/usr/bin/env bash
# NF4 on a GPU machine: builds fthost there (torch's own CMake package, sm_90), runs the
# CUDA tests against the CPU reference (Nf4.CudaEqualsCpu, Kernels.RmsNormCudaEqualsCpu and
# the rest of the Nf4/Kernels suites), then bench/nf4_bench.cpp: device results checked
# bit for bit against the CPU reference, dequantisation GB/s and nf4_linear against a
# bf16 linear of the same shapes. Its output goes into docs/PERFORMANCE.md.
#
#   bash bench/gpu_nf4.sh                 # on the GPU machine (the device tool's `run`)
#   bash bench/gpu_nf4.sh --cpu-dry-run   # here: the same steps on the CPU, small sizes
#
# The GPU machine has torch, nvcc, cmake and ninja but no network: the libraries the
# build needs come as .deb files in FTHOST_DEBS (default: shared/debs, filled by
# scripts/fetch_debs.sh), which bench/gpu_env.sh unpacks into a private prefix.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${1:-}" = "--cpu-dry-run" ]; then
  BUILD="${FTHOST_BUILD_DIR:-$ROOT/build}"
  cmake --build "$BUILD" -j 2 --target fthost_tests fthost_nf4_bench >/dev/null
  "$BUILD/tests/fthost_tests" --gtest_filter='Nf4.*:Kernels.*' --gtest_brief=1
  "$BUILD/fthost_nf4_bench" --device cpu --small --repeat 5
  exit 0
fi

source "$ROOT/bench/gpu_env.sh"
BUILD="${FTHOST_BUILD_DIR:-/tmp/fthost-gpu-build}"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${FTHOST_CMAKE_ARGS[@]}" \
  -DTORCH_CUDA_ARCH_LIST=9.0 >"$BUILD.cmake.log" 2>&1 || { tail -30 "$BUILD.cmake.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target fthost_tests fthost_nf4_bench >"$BUILD.build.log" 2>&1 ||
  { tail -30 "$BUILD.build.log"; exit 1; }
"$BUILD/tests/fthost_tests" --gtest_filter='Nf4.*:Kernels.*:*Cuda*' --gtest_brief=1
"$BUILD/fthost_nf4_bench" --device cuda --tokens 4096 --repeat 50
