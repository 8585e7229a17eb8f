#!/usr/bin/env bash
# fthost next to Hugging Face transformers on an encoder-decoder: T5 SFT on the CoEdIT
# edit pairs (data/coedit). The peer is transformers 5.24.0 (+ PEFT 0.21.2 for LoRA)
# trained by a plain PyTorch loop over T5ForConditionalGeneration (bench/peer/hf_t5.py;
# not Seq2SeqTrainer, whose sampler would order the rows its own way), in the venv
# bench/peer.sh installs (~/.cache/fthost/peer-venv, reusing setup.sh's LibTorch: both
# sides run torch 2.11.0). Same starting weights: a random T5 of configs/coedit.toml's
# shape (0.92M parameters, own LM head) made once by transformers
# (bench/peer/make_t5_init.py) and loaded by both; for LoRA (r 16, alpha 32, every linear
# layer) the same starting adapter too (fthost's own initial A, saved by a 1-step run at
# lr 1e-30, loaded by PEFT with B = 0). Same rows in the same order (shuffle = false: the
# file's order), the same token ids (T5TokenizerFast from data/coedit/tokenizer: prompt +
# </s> as the source, completion + </s> as the target), batch 32, sequence limit 96,
# AdamW (0.9, 0.999, 1e-8, weight decay 0.01 on matrices only), clip 1.0, a constant lr,
# the same steps and 2 CPU threads — so the two loss curves agree step by step.
# Prints per run: steps, tokens/s (non-padding source + target tokens trained on per
# second; fthost: over its stage seconds, which include the final held-out loss pass and
# saving; the peer: over its training loop), peak RSS of the whole process (fthost:
# /usr/bin/time -f %M; the peer: ru_maxrss), mean train loss of the last 20 steps,
# held-out loss (data/coedit/eval.jsonl, mean over target tokens), fthost's speed-up, and
# on the peer's line the loss difference from fthost at step 1 and at most over all steps.
# STEPS (default 100) sets the steps of every run.
# Usage: bash bench/t5_peer.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
THREADS=2
STEPS="${STEPS:-100}"
BATCH=32
MAX_LEN=96
WD=0.01

PY="$(peer_python)"
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time) for fthost's peak RSS" >&2; exit 1; }

bench_header
echo "peer: $("$PY" -c 'import torch, transformers, peft; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")'), plain PyTorch loop"

fthost_run() {  # fthost_run NAME MODE STEPS LR
  local name="$1" mode="$2" steps="$3" lr="$4" param
  if [ "$mode" = lora ]; then param=$'plugin = "lora"\nr = 16\nlora_alpha = 32.0\ntarget_modules = ["all-linear"]'
  else param='plugin = "full"'; fi
  cat > "$OUT/$name.toml" <<TOML
[run]
output_dir = "$OUT/$name"
seed = 1234
threads = $THREADS
[[stage]]
name = "sft"
init_from = "$OUT/t5_init"
[stage.param]
$param
[stage.objective]
plugin = "sft"
[stage.data]
train = "data/coedit/train.jsonl"
eval = "data/coedit/eval.jsonl"
max_seq_len = $MAX_LEN
shuffle = false
[stage.train]
steps = $steps
batch_size = $BATCH
lr = $lr
warmup_steps = 0
min_lr_ratio = 1.0
weight_decay = $WD
max_grad_norm = 1.0
log_every = 1
[stage.eval]
base = false
TOML
  /usr/bin/time -f %M -o "$OUT/$name.rss" "$BUILD/fthost" run "$OUT/$name.toml" >/dev/null 2>"$OUT/$name.log" ||
    { cat "$OUT/$name.log" >&2; exit 1; }
}

printf "%-6s %-5s %5s %9s %9s %10s %9s %8s  %s\n" trainer mode steps "tok/s" "peak MB" "train loss" "eval loss" speed-up \
  "loss diff (step 1, max)"
"$PY" bench/peer/make_t5_init.py "$OUT/t5_init" data/coedit/tokenizer >/dev/null 2>&1
# fthost's initial LoRA adapter, for PEFT to start from: one step at lr 1e-30 leaves A as drawn.
fthost_run lora_init lora 1 1e-30
for mode in full lora; do
  if [ "$mode" = full ]; then lr=2e-3 adapter=""; else lr=3e-3 adapter="$OUT/lora_init/stages/sft/final"; fi
  fthost_run "$mode" "$mode" "$STEPS" "$lr"
  "$PY" bench/peer/hf_t5.py "$OUT/t5_init" data/coedit/train.jsonl data/coedit/eval.jsonl "$mode" "$STEPS" "$lr" \
    "$THREADS" "$BATCH" "$MAX_LEN" "$WD" $adapter > "$OUT/hf_$mode.json" 2>"$OUT/hf_$mode.log" ||
    { cat "$OUT/hf_$mode.log" >&2; exit 1; }
  python3 - "$OUT/$mode" "$(cat "$OUT/$mode.rss")" "$(tail -1 "$OUT/hf_$mode.json")" <<'PY'
import json, sys
d, rss_kb, hf = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
st = json.load(open(f"{d}/summary.json"))["stages"][0]
losses = [m["loss"] for m in map(json.loads, open(f"{d}/metrics.jsonl")) if "loss" in m and "eval/loss" not in m]
# The same rows and ids on both sides: fthost counts 1 + target tokens per row (the
# decoder's start token and the target); the peer counts those too, beside source + target.
if st["tokens"] != hf["decoder_tokens"] or len(losses) != len(hf["losses"]):
    sys.exit(f"fthost and the peer trained on different tokens: {st['tokens']} vs {hf['decoder_tokens']} decoder tokens")
ft = {"framework": "fthost", "mode": hf["mode"], "steps": st["steps"], "tokens_per_s": hf["tokens"] / st["seconds"],
      "peak_rss_mb": rss_kb / 1024, "train_loss_last20": sum(losses[-20:]) / len(losses[-20:]),
      "eval_loss": st["eval"]["loss"]}
diffs = [abs(a - b) for a, b in zip(losses, hf["losses"])]
for r in (ft, hf):
    up = f"{ft['tokens_per_s'] / hf['tokens_per_s']:.2f}x" if r is ft else ""
    diff = f"{diffs[0]:.1e}, {max(diffs):.1e}" if r is hf else ""
    print(f"{r['framework']:<6} {r['mode']:<5} {r['steps']:>5} {r['tokens_per_s']:>9.0f} {r['peak_rss_mb']:>9.0f} "
          f"{r['train_loss_last20']:>10.4f} {r['eval_loss']:>9.4f} {up:>8}  {diff}")
PY
done
