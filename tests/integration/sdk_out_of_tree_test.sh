#!/usr/bin/env bash
# A third party's view: install the SDK, build examples/keyword_grader against it alone
# (no fthost source tree, no LibTorch), and load the result through FTHOST_PLUGIN_PATH.
# Usage: sdk_out_of_tree_test.sh BUILD_DIR SOURCE_DIR FTHOST
set -euo pipefail
BUILD="$1" SRC="$2" FTHOST="$3"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
test -f "$WORK/prefix/include/fthost/fthost.h"
test -f "$WORK/prefix/lib/cmake/fthost_sdk/fthost_sdkConfig.cmake"

cp -r "$SRC/examples/keyword_grader" "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_PREFIX_PATH="$WORK/prefix" >/dev/null
cmake --build "$WORK/build" >/dev/null
lib="$WORK/build/libkeyword_grader.so"
test -f "$lib"
# Only the entry symbol is exported.
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^_init$\|^_fini$' | tr '\n' ' ')
[ "$exported" = "fthost_plugins_v1 " ] || { echo "unexpected exports: $exported"; exit 1; }

out=$(FTHOST_PLUGIN_PATH="$WORK/build" "$FTHOST" plugins --options 2>&1)
echo "$out" | grep -E "keyword_coverage +grader +1.0.0 +$lib" >/dev/null || { echo "$out"; exit 1; }
echo "$out" | grep -q "keywords" || { echo "$out"; exit 1; }
echo "$out" | grep -q "refused" && { echo "$out"; exit 1; }
echo "sdk: out-of-tree plugin built against the installed SDK and loaded"
