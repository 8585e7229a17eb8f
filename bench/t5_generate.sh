#!/usr/bin/env bash
# Generation throughput of `fthost generate` on an encoder-decoder: the CoEdIT SFT model
# (configs/coedit.toml's first two stages, pretrain and sft, run here first; its grpo stage
# is left out) completing the 300 held-out prompts of data/coedit/eval.jsonl, batch 64,
# 2 threads, at most 40 new tokens: greedy and sampled (8 completions per prompt,
# temperature 1, seed 1), each with the KV cache (the encoder runs once per prompt, its
# cross-attention keys and values stay cached for every step, and the samples of a prompt
# share one prefill) and without it (--no-cache: every step recomputes everything, the
# encoder included). One line per run: fthost generate's own summary.
# PRETRAIN_STEPS / SFT_STEPS override the stages' steps and PROMPTS takes only the first
# prompts (quick checks; leave them unset for the figures).
# Usage: bash bench/t5_generate.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
STAGE="$OUT/coedit/stages/sft/final"
# The config up to (not including) its third stage: pretrain, then sft.
awk '/^\[\[stage\]\]/ { n++ } n < 3' configs/coedit.toml > "$OUT/coedit_sft.toml"
sets=(--set "run.output_dir=$OUT/coedit")
[ -n "${PRETRAIN_STEPS:-}" ] && sets+=(--set "stage.pretrain.train.steps=$PRETRAIN_STEPS")
[ -n "${SFT_STEPS:-}" ] && sets+=(--set "stage.sft.train.steps=$SFT_STEPS")
"$BUILD/fthost" run "$OUT/coedit_sft.toml" "${sets[@]}" >"$OUT/coedit.log" 2>&1 || { cat "$OUT/coedit.log" >&2; exit 1; }
PROMPTS_FILE=data/coedit/eval.jsonl
if [ -n "${PROMPTS:-}" ]; then head -n "$PROMPTS" data/coedit/eval.jsonl > "$OUT/prompts.jsonl"; PROMPTS_FILE="$OUT/prompts.jsonl"; fi
bench_header
# The sft stage's held-out result, without its per-task lines.
echo "model: $(grep -A2 'stage results' "$OUT/coedit.log" | tail -1 | sed -e 's/^ *//' -e 's/  task:[^ ]* [^ ]* -> [^ ]*//g')"
gen() {  # gen LABEL [options]
  local label="$1"
  shift
  local line
  line=$("$BUILD/fthost" generate "$STAGE" --input "$PROMPTS_FILE" --output "$OUT/out.jsonl" \
           --threads 2 --batch-size 64 --max-new-tokens 40 "$@" 2>&1 >/dev/null | grep "fthost generate:")
  printf "%-24s %s\n" "$label" "${line#fthost generate: }"
}
gen "greedy, KV cache"
gen "greedy, no cache" --no-cache
gen "sampled x8, KV cache" --num-generations 8 --temperature 1.0 --seed 1
gen "sampled x8, no cache" --num-generations 8 --temperature 1.0 --seed 1 --no-cache
