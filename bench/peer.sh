#!/usr/bin/env bash
# fthost next to its peer on this machine: Hugging Face transformers + PEFT + TRL's
# SFTTrainer (pinned below, installed by this script into its own venv under
# ~/.cache/fthost/peer-venv — never a dependency of fthost; it reuses the LibTorch that
# setup.sh installed, so both sides run torch 2.11.0). Same starting weights
# (bench/peer/make_init.py), same rows and token ids (the quickstart's query -> category
# pairs, byte tokens), batch 8, sequence limit 128, AdamW, warm-up + cosine to 10%,
# steps and CPU threads; full fine-tuning and LoRA (r 16, alpha 32, all linear layers),
# for the quickstart's model shape (0.8M parameters) and a ~19M-parameter Llama shape.
# Prints per run: steps, tokens/s (non-padding tokens trained on per second), peak RSS of
# the process, mean train loss of the last 25 steps, held-out loss, and fthost's speed-up.
# Usage: bash bench/peer.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
THREADS=2

PY="$(peer_python)"

bench_header
echo "peer: $("$PY" -c 'import torch, transformers, peft, trl; print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, trl {trl.__version__}")')"

fthost_run() {  # fthost_run NAME INIT MODE STEPS LR
  local name="$1" init="$2" mode="$3" steps="$4" lr="$5" param
  if [ "$mode" = lora ]; then param=$'plugin = "lora"\nr = 16\nlora_alpha = 32.0\ntarget_modules = ["all-linear"]'
  else param='plugin = "full"'; fi
  cat > "$OUT/$name.toml" <<TOML
[run]
output_dir = "$OUT/$name"
seed = 1234
threads = $THREADS
[[stage]]
name = "sft"
init_from = "$init"
[stage.param]
$param
[stage.objective]
plugin = "sft"
[stage.data]
train = "data/quickstart/train.jsonl"
eval = "data/quickstart/eval.jsonl"
max_seq_len = 128
[stage.train]
steps = $steps
batch_size = 8
lr = $lr
warmup_steps = $(( steps / 10 > 1 ? steps / 10 : 1 ))
min_lr_ratio = 0.1
log_every = 1
[stage.eval]
base = false
TOML
  "$BUILD/fthost" run "$OUT/$name.toml" >/dev/null 2>"$OUT/$name.log" || { cat "$OUT/$name.log" >&2; exit 1; }
  python3 - "$OUT/$name" "$mode" "$steps" <<'PY'
import json, sys
d, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = json.load(open(f"{d}/summary.json"))["stages"][0]
losses = [m["loss"] for m in map(json.loads, open(f"{d}/metrics.jsonl")) if "loss" in m and "eval/loss" not in m]
print(json.dumps({"framework": "fthost", "mode": mode, "steps": st["steps"], "tokens_per_s": st["tokens_per_s"],
                  "peak_rss_mb": max(st["load_peak_rss_mb"], st["train_peak_rss_mb"]),
                  "train_loss_last25": sum(losses[-25:]) / len(losses[-25:]), "eval_loss": st["eval"]["loss"]}))
PY
}

printf "%-14s %-6s %-5s %5s %9s %9s %10s %9s %8s\n" model trainer mode steps "tok/s" "peak MB" "train loss" "eval loss" speed-up
compare() {  # compare LABEL INIT STEPS LR_FULL LR_LORA
  local label="$1" init="$2" steps="$3"
  for mode in full lora; do
    local lr; [ "$mode" = full ] && lr="$4" || lr="$5"
    local ft hf
    ft="$(fthost_run "${label}_$mode" "$init" "$mode" "$steps" "$lr")"
    hf="$("$PY" bench/peer/hf_sft.py "$init" data/quickstart/train.jsonl data/quickstart/eval.jsonl "$mode" "$steps" "$lr" "$THREADS" 2>"$OUT/hf_${label}_$mode.log" | tail -1)" ||
      { cat "$OUT/hf_${label}_$mode.log" >&2; exit 1; }
    python3 - "$label" "$ft" "$hf" <<'PY'
import json, sys
label, ft, hf = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for r in (ft, hf):
    up = f"{ft['tokens_per_s'] / hf['tokens_per_s']:.2f}x" if r is ft else ""
    print(f"{label:<14} {r['framework']:<6} {r['mode']:<5} {r['steps']:>5} {r['tokens_per_s']:>9.0f} {r['peak_rss_mb']:>9.0f} "
          f"{r['train_loss_last25']:>10.4f} {r['eval_loss']:>9.4f} {up:>8}")
PY
  done
}

"$PY" bench/peer/make_init.py "$OUT/init_tiny" 128 352 4 4 2 >/dev/null 2>&1
"$PY" bench/peer/make_init.py "$OUT/init_19m" 384 1024 12 6 2 >/dev/null 2>&1
compare tiny-0.8M "$OUT/init_tiny" "${TINY_STEPS:-200}" 1e-3 3e-3
compare llama-19M "$OUT/init_19m" "${MID_STEPS:-60}" 5e-4 2e-3
