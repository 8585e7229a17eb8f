#!/usr/bin/env bash
# ZeRO-1 on this machine: the memory of 2 Gloo ranks (`--nproc-per-node 2`, 1 thread each)
# fully fine-tuning a decoder of hidden 512, MLP 1408, 8 layers (24M parameters: 97 MB of
# fp32 weights, as much again of gradients, 194 MB of AdamW moments), batch 4 x 256 packed
# tokens per rank, 6 steps, with [run.distributed] zero_stage = 0 (every rank keeps all the
# moments) and 1 (each moment on one rank), for full's weight_dtype float32 and bfloat16
# (bf16 weights and gradients, float32 masters and moments in the optimizer state). "train
# MB" is rank 0's train_peak_rss_mb (the stage summary: the process's peak during the
# training loop); the losses of the two zero stages must agree.
# Usage: bash bench/zero_memory.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_header
printf "%-12s %-12s %9s %9s %8s\n" weight_dtype zero_stage "tok/s" "train MB" "loss"
for wd in float32 bfloat16; do
for zero in 0 1; do
  cat > "$OUT/z$zero.toml" <<TOML
[run]
output_dir = "$OUT/z${wd}_$zero"
seed = 1
threads = 1
[run.distributed]
zero_stage = $zero
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
weight_dtype = "$wd"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "data/quickstart/corpus.jsonl"
max_seq_len = 256
packing = true
[stage.train]
steps = 6
batch_size = 4
lr = 1e-4
log_every = 3
checkpoint_every = 0
[stage.eval]
base = false
TOML
  "$BUILD/fthost" run "$OUT/z$zero.toml" --nproc-per-node 2 > "$OUT/z$zero.log" 2>&1 || { tail -20 "$OUT/z$zero.log"; exit 1; }
  python3 - "$OUT/z${wd}_$zero" "$wd" "$zero" <<'PY'
import json, sys
d, wd, zero = sys.argv[1:]
s = [x for x in json.load(open(d + "/summary.json"))["stages"] if x["name"] == "lm"][0]
lines = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l]
print("%-12s %-12s %9.0f %9.0f %8.4f" % (wd, zero, s["tokens_per_s"], s["train_peak_rss_mb"], lines[-1]["loss"]))
PY
done
done
