#!/usr/bin/env bash
# Activation checkpointing: peak memory and speed of full training with and without it,
# for a decoder whose activations dominate (hidden 512, 8 layers, MLP 1408, 24M
# parameters; batch 8 x 512 tokens, packed corpus text), 4 steps, 2 threads. "train MB"
# is the stage summary's train_peak_rss_mb (the process's peak during the training loop).
# Usage: bash bench/checkpointing.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_header
printf "%-22s %6s %9s %9s\n" run steps "tok/s" "train MB"
for ckpt in false true; do
  cat > "$OUT/c.toml" <<TOML
[run]
output_dir = "$OUT/ckpt_$ckpt"
seed = 1
threads = 2
[[stage]]
name = "lm"
[stage.model]
plugin = "decoder"
hidden_size = 512
intermediate_size = 1408
num_hidden_layers = 8
num_attention_heads = 8
num_key_value_heads = 4
[stage.param]
plugin = "full"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "data/quickstart/corpus.jsonl"
max_seq_len = 512
packing = true
[stage.train]
steps = 4
batch_size = 8
lr = 1e-4
log_every = 1
activation_checkpointing = $ckpt
TOML
  "$BUILD/fthost" run "$OUT/c.toml" >/dev/null 2>"$OUT/c.log" || { cat "$OUT/c.log" >&2; exit 1; }
  python3 - "$OUT/ckpt_$ckpt/summary.json" "$ckpt" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["stages"][0]
label = "checkpointing" if sys.argv[2] == "true" else "no checkpointing"
print(f"{label:<22} {st['steps']:>6} {st['tokens_per_s']:>9.0f} {st['train_peak_rss_mb']:>9.0f}")
PY
done
