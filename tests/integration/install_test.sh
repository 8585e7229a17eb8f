#!/usr/bin/env bash
# The installed fthost, as a deploying team and a third party see it: `cmake --install`
# into a temporary prefix, moved elsewhere (the tree is relocatable and needs nothing of
# the build folder); `fthost --version`, `fthost plugins` and `fthost doctor` from it; a
# short quickstart from its share/fthost; the launcher's message when LibTorch is
# missing; examples/keyword_grader built out of tree against that install's SDK alone and
# loaded by the installed fthost; and the Debian package, unpacked, listing its plugins and
# running the quickstart.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD="$1" SRC="$2"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$BUILD" --prefix "$WORK/staged" >/dev/null
mv "$WORK/staged" "$WORK/prefix"  # relocated: nothing may point at the first prefix
P="$WORK/prefix"
for f in bin/fthost lib/fthost/fthost lib/libfthost_kernels.so include/fthost/fthost.h \
         lib/cmake/fthost_sdk/fthost_sdkConfig.cmake share/fthost/configs/quickstart.toml \
         share/fthost/data/quickstart/train.jsonl; do
  test -e "$P/$f" || fail "the install lacks $f"
done

# The executable resolves the kernels library from the install, not the build folder.
kernels=$(LD_LIBRARY_PATH="$(dirname "$(readlink -f "$(ldd "$BUILD/fthost" | awk '/libtorch_cpu/ {print $3}')")")" \
  ldd "$P/lib/fthost/fthost" | awk '/libfthost_kernels/ {print $3}')
[ "$(readlink -f "$kernels")" = "$P/lib/libfthost_kernels.so" ] || fail "libfthost_kernels resolves to '$kernels'"

version=$("$P/bin/fthost" --version)
echo "$version" | grep -qE "^fthost [0-9]+\.[0-9]+\.[0-9]+ \(commit " || fail "--version: $version"
echo "$version" | grep -qE "^plugin ABI [0-9]+\.[0-9]+$" || fail "--version lacks the ABI: $version"
echo "$version" | grep -qE "^LibTorch [0-9.]+, loaded from /" || fail "--version lacks LibTorch: $version"
echo "$version" | grep -qE "^(CUDA build \(CUDA [0-9.]+, NCCL|CPU build)" || fail "--version lacks CPU/CUDA: $version"

plugins=$("$P/bin/fthost" plugins 2>&1)
echo "$plugins" | grep -q "refused" && fail "plugins refused: $plugins"
n=$(echo "$plugins" | grep -c "$P/lib/fthost/plugins/lib") || true
[ "$n" -ge 18 ] || fail "only $n plugins from the install: $plugins"
echo "$plugins" | grep -q "$BUILD" && fail "plugins from the build folder: $plugins"

doctor=$("$P/bin/fthost" doctor --output-dir "$WORK/runs" 2>&1) || fail "doctor: $doctor"
echo "$doctor" | grep -q "Gloo (CPU ranks): a one-process all-reduce works" || fail "doctor: $doctor"
echo "$doctor" | grep -q "program grader: a sandboxed program ran" || fail "doctor: $doctor"

# The quickstart from the installed copy of the recipes and data, shortened.
(cd "$P/share/fthost" && "$P/bin/fthost" run configs/quickstart.toml --set "run.output_dir=\"$WORK/qs\"" \
  --set stage.pretrain.train.steps=4 --set stage.finetune.train.steps=4 --set stage.pretrain.train.eval_every=0 \
  --set stage.finetune.train.eval_every=0 --set stage.finetune.eval.max_examples=8 >"$WORK/qs.log" 2>&1) ||
  { cat "$WORK/qs.log"; fail "the quickstart from the install"; }
grep -q '"status": "completed"' "$WORK/qs/summary.json" || fail "quickstart summary: $(cat "$WORK/qs/summary.json")"

# No LibTorch where the user points: the launcher says which one and how.
if FTHOST_LIBTORCH="$WORK/nowhere" "$P/bin/fthost" --version >"$WORK/missing.log" 2>&1; then
  fail "ran without a LibTorch"
fi
grep -q "holds no LibTorch" "$WORK/missing.log" || fail "missing-LibTorch message: $(cat "$WORK/missing.log")"
grep -q "torch/lib folder" "$WORK/missing.log" || fail "missing-LibTorch message: $(cat "$WORK/missing.log")"

# A third party: examples/keyword_grader against the installed SDK alone (no fthost
# source tree, no LibTorch), loaded by the installed fthost through FTHOST_PLUGIN_PATH.
cp -r "$SRC/examples/keyword_grader" "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/plugin" -DCMAKE_PREFIX_PATH="$P" >/dev/null
cmake --build "$WORK/plugin" >/dev/null
lib="$WORK/plugin/libkeyword_grader.so"
test -f "$lib" || fail "no $lib"
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^_init$\|^_fini$' | tr '\n' ' ')
[ "$exported" = "fthost_plugins_v1 " ] || fail "unexpected exports: $exported"
out=$(FTHOST_PLUGIN_PATH="$WORK/plugin" "$P/bin/fthost" plugins --options 2>&1)
echo "$out" | grep -qE "keyword_coverage +grader +1.0.0 +$lib" || fail "$out"
echo "$out" | grep -q "keywords" || fail "$out"
echo "$out" | grep -q "refused" && fail "$out"

# The Debian package: its declared dependencies, and its files unpacked elsewhere run.
(cd "$BUILD" && cpack -G DEB -B "$WORK/pkg" >"$WORK/cpack.log" 2>&1) || { cat "$WORK/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$WORK"/pkg/fthost_*.deb)
depends=$(dpkg-deb -f "$deb" Depends)
for d in libboost-program-options libpcre2-8 libsentencepiece libutf8proc libc6; do
  echo "$depends" | grep -q "$d" || fail "the package does not depend on $d: $depends"
done
dpkg-deb -x "$deb" "$WORK/root"
"$WORK/root/usr/bin/fthost" plugins 2>&1 | grep -q "$WORK/root/usr/lib/fthost/plugins/libfthost_decoder.so" ||
  fail "the unpacked package's plugins"
(cd "$WORK/root/usr/share/fthost" && "$WORK/root/usr/bin/fthost" run configs/quickstart.toml \
  --set "run.output_dir=\"$WORK/qs_deb\"" --set stage.pretrain.train.steps=2 --set stage.finetune.train.steps=2 \
  --set stage.pretrain.train.eval_every=0 --set stage.finetune.train.eval_every=0 \
  --set stage.finetune.eval.max_examples=4 >"$WORK/qs_deb.log" 2>&1) || { cat "$WORK/qs_deb.log"; fail "the quickstart from the package"; }
grep -q '"status": "completed"' "$WORK/qs_deb/summary.json" || fail "the package's quickstart did not complete"
echo "install: relocated prefix, --version, plugins, doctor, quickstart, missing LibTorch, SDK plugin and .deb all work"
