#!/usr/bin/env bash
# Data-parallel scaling on this machine: one process against two ranks over Gloo
# (`fthost run --nproc-per-node 2`), one CPU thread per process, the same global batch
# (1 process: grad_accum 2; 2 ranks: grad_accum 1 each) — full fine-tuning and LoRA of a
# decoder (hidden 256, MLP 704, 4 layers, 3.1M parameters), batch 8 x 256 packed tokens of
# quickstart text, 20 steps. Reports tokens/s (the stage's whole-step throughput) and the
# seconds per step spent in collectives (comm_s, the mean over logged steps: the
# all-reduces plus waiting for the slower rank). Also one process with 2 threads, the
# other way to spend the same two cores.
# Usage: bash bench/distributed_scaling.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_header
printf "%-6s %-26s %9s %9s %8s\n" param run "tok/s" "comm s" "loss"
for param in full lora; do
  for run in "1 process, 1 thread" "1 process, 2 threads" "2 ranks, 1 thread each"; do
    ranks=1; threads=1; accum=2
    case "$run" in
      "1 process, 2 threads") threads=2 ;;
      "2 ranks"*) ranks=2; accum=1 ;;
    esac
    name="${param}_${ranks}_${threads}"
    cat > "$OUT/$name.toml" <<TOML
[run]
output_dir = "$OUT/$name"
seed = 1
threads = $threads
[[stage]]
name = "lm"
[stage.model]
plugin = "decoder"
hidden_size = 256
intermediate_size = 704
num_hidden_layers = 4
num_attention_heads = 8
num_key_value_heads = 4
[stage.param]
plugin = "$param"
$( [ "$param" = lora ] && printf 'r = 16\nlora_alpha = 32.0\ntarget_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]\n' )
[stage.objective]
plugin = "cpt"
[stage.data]
train = "data/quickstart/corpus.jsonl"
max_seq_len = 256
packing = true
[stage.train]
steps = 20
batch_size = 8
grad_accum = $accum
lr = 1e-3
log_every = 5
checkpoint_every = 0
[stage.eval]
base = false
TOML
    "$BUILD/fthost" run "$OUT/$name.toml" --nproc-per-node "$ranks" > "$OUT/$name.log" 2>&1 ||
      { tail -20 "$OUT/$name.log"; exit 1; }
    python3 - "$OUT/$name" "$param" "$run" <<'PY'
import json, sys
d, param, run = sys.argv[1:]
s = [x for x in json.load(open(d + "/summary.json"))["stages"] if x["name"] == "lm"][0]
lines = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l]
comm = [l["comm_s"] for l in lines if "comm_s" in l]
print("%-6s %-26s %9.0f %9s %8.4f" % (param, run, s["tokens_per_s"],
      "%.4f" % (sum(comm) / len(comm)) if comm else "-", lines[-1]["loss"]))
PY
  done
done
