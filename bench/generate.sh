#!/usr/bin/env bash
# Generation throughput of `fthost generate` on the quickstart's fine-tuned model: the
# 300 held-out prompts, greedy and sampled (8 completions each), with the KV cache and
# without it (the prefix recomputed every step). Runs the quickstart first if
# runs/quickstart does not exist.
# Usage: bash bench/generate.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
STAGE="$OUT/quickstart/stages/finetune/final"
"$BUILD/fthost" run configs/quickstart.toml --set "run.output_dir=$OUT/quickstart" >/dev/null 2>&1
bench_header
gen() {  # gen LABEL [options]
  local label="$1"
  shift
  local line
  line=$("$BUILD/fthost" generate "$STAGE" --input data/quickstart/eval.jsonl --output "$OUT/$label.jsonl" \
           --threads 2 --batch-size 64 "$@" 2>&1 >/dev/null | grep "fthost generate:")
  printf "%-28s %s\n" "$label" "${line#fthost generate: }"
}
gen "greedy, 32 tokens max" --max-new-tokens 32
gen "greedy, no cache" --max-new-tokens 32 --no-cache
gen "sampled x8, 64 tokens max" --max-new-tokens 64 --num-generations 8 --temperature 1.0 --seed 1
gen "sampled x8, no cache" --max-new-tokens 64 --num-generations 8 --temperature 1.0 --seed 1 --no-cache
