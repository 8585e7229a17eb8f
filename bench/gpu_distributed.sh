#!/usr/bin/env bash
# NCCL on a GPU machine: builds fthost there and trains a ~1.1B-parameter Llama-shape
# decoder (hidden 2048, MLP 5632, 22 layers, 32 heads, 4 key-value heads, vocabulary
# 32000; fresh weights) at sequence 1024, bf16 autocast, full and LoRA: one plain process,
# one rank under torchrun with [run.distributed] backend = "nccl" (the process group is
# made for one rank, so the step pays the real bucketed all-reduce of every trainable
# gradient), and one rank per GPU when the machine has more than one. Prints tokens/s per
# GPU, comm_s (seconds per step in collectives) and its share of the step.
#
#   bash bench/gpu_distributed.sh                 # on the GPU machine
#   bash bench/gpu_distributed.sh --cpu-dry-run   # here: the same steps, a tiny shape, Gloo on the CPU
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
trap 'if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
phase() { echo "[$(date +%T)] $*"; }

if [ "${1:-}" = "--cpu-dry-run" ]; then
  DEVICE=cpu; BACKEND=gloo; PRECISION=fp32
  BUILD="${FTHOST_BUILD_DIR:-$ROOT/build}"
  TORCHRUN=("${FTHOST_TORCHRUN:-$HOME/.cache/fthost/torch-2.11.0/bin/torchrun}")
  SHAPE=(64 128 2 4 2); SEQ=128; BATCH=2; STEPS=6; NGPU=1
else
  DEVICE=cuda; BACKEND=nccl; PRECISION=bf16
  phase "environment"
  source "$ROOT/bench/gpu_env.sh"
  BUILD="${FTHOST_BUILD_DIR:-/tmp/fthost-gpu-build}"
  phase "configure"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${FTHOST_CMAKE_ARGS[@]}" \
    -DFTHOST_BUILD_TESTS=OFF -DTORCH_CUDA_ARCH_LIST=9.0 >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log"; exit 1; }
  phase "build"
  cmake --build "$BUILD" -j "$(nproc)" --target fthost fthost_decoder fthost_full fthost_lora fthost_causal_lm \
    >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
  TORCHRUN=(python3 -m torch.distributed.run)
  SHAPE=(2048 5632 22 32 4); SEQ=1024; BATCH="${BATCH:-4}"; STEPS="${STEPS:-12}"
  NGPU="$(nvidia-smi -L | wc -l)"
fi
read -r HIDDEN INTER LAYERS HEADS KV <<<"${SHAPE[*]}"
echo "date: $(date -u +%Y-%m-%d)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)  device: $DEVICE x $NGPU"

python3 bench/long_rows.py "$WORK/rows.jsonl" "$SEQ"

printf "%-5s %-24s %12s %9s %8s\n" mode run "tok/s/GPU" "comm s" share
for mode in full lora; do
  if [ "$mode" = lora ]; then param=$'plugin = "lora"\nr = 16\nlora_alpha = 32.0\ntarget_modules = ["all-linear"]'
  else param='plugin = "full"'; fi
  runs=("plain" "torchrun, 1 rank")
  [ "$NGPU" -gt 1 ] && runs+=("torchrun, $NGPU ranks")
  for run in "${runs[@]}"; do
    name="${mode}_$(echo "$run" | tr -c 'a-z0-9' _)"
    cat > "$WORK/$name.toml" <<TOML
[run]
output_dir = "$WORK/$name"
device = "$DEVICE"
precision = "$PRECISION"
[run.distributed]
backend = "$BACKEND"
[[stage]]
name = "train"
[stage.model]
plugin = "decoder"
vocab_size = 32000
hidden_size = $HIDDEN
intermediate_size = $INTER
num_hidden_layers = $LAYERS
num_attention_heads = $HEADS
num_key_value_heads = $KV
[stage.param]
$param
[stage.objective]
plugin = "cpt"
[stage.data]
train = "$WORK/rows.jsonl"
max_seq_len = $SEQ
shuffle = false
[stage.train]
steps = $STEPS
batch_size = $BATCH
lr = 1e-4
log_every = 1
checkpoint_every = 0
[stage.eval]
base = false
TOML
    phase "$mode: $run"
    case "$run" in
      plain) "$BUILD/fthost" run "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; exit 1; } ;;
      *) n=$([ "$run" = "torchrun, 1 rank" ] && echo 1 || echo "$NGPU")
         "${TORCHRUN[@]}" --standalone --nproc-per-node "$n" --no-python "$BUILD/fthost" run "$WORK/$name.toml" \
           >"$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; exit 1; } ;;
    esac
    python3 - "$WORK/$name" "$mode" "$run" "$NGPU" <<'PY'
import json, sys
d, mode, run, ngpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lines = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l and "eval/" not in l]
timed = lines[2:] if len(lines) > 2 else lines  # after warm-up
tps = len(timed) / sum(1 / m["tokens_per_s"] for m in timed)  # steps have equal tokens
ranks = ngpu if run.endswith("ranks") else 1
comm = [m["comm_s"] for m in timed if "comm_s" in m]
if comm:
    mean = sum(comm) / len(comm)
    step_s = json.load(open(d + "/summary.json"))["stages"][0]["tokens"] / len(lines) / tps
    print("%-5s %-24s %12.0f %9.4f %7.1f%%" % (mode, run, tps / ranks, mean, 100 * mean / step_s))
else:
    print("%-5s %-24s %12.0f %9s %8s" % (mode, run, tps / ranks, "-", "-"))
PY
  done
done
