#!/usr/bin/env bash
# Times the quickstart end to end on this machine and prints, per stage: steps, tokens,
# seconds, tokens/s, and held-out exact match before -> after.
# Usage: bash bench/quickstart.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
start=$(date +%s.%N)
"$BUILD/fthost" run configs/quickstart.toml --set "run.output_dir=$OUT/run" >/dev/null 2>"$OUT/log"
end=$(date +%s.%N)
bench_header
printf "wall time (whole quickstart, including eval): %.1f s\n" "$(echo "$end - $start" | bc)"
python3 - "$OUT/run/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{'stage':<10} {'steps':>6} {'tokens':>9} {'stage s':>8} {'tok/s':>8}  exact_match (base -> tuned)")
for st in s["stages"]:
    em = st["eval"].get("exact_match")
    base = st["base_eval"].get("exact_match")
    emtxt = f"{base:.3f} -> {em:.3f}" if em is not None else "-"
    print(f"{st['name']:<10} {st['steps']:>6} {st['tokens']:>9} {st['seconds']:>8.1f} {st['tokens']/st['seconds']:>8.0f}  {emtxt}")
PY
