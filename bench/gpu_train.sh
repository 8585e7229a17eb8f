#!/usr/bin/env bash
# Training speed on a GPU machine: full and LoRA fine-tuning of a ~1.1B-parameter
# Llama-shape decoder (TinyLlama's shape: hidden 2048, MLP 5632, 22 layers, 32 heads, 4
# key-value heads, vocabulary 32000) at sequence 2048, bf16 autocast over fp32 master
# weights, fused AdamW, scaled_dot_product_attention's flash path (one document per row,
# no padding), by fthost and by transformers + PEFT in a plain PyTorch loop
# (bench/peer/hf_train.py) from the same starting weights and rows. Prints tokens/s,
# MFU (model FLOPs per token x tokens/s over the GPU's dense bf16 peak) and peak device
# memory per run; then decoding tokens/s with and without CUDA graphs (fthost generate,
# the same weights); then the loss step's device memory with and without chunked log-probs
# (bench/logprobs_bench.cpp at vocabulary 128,256, hidden 4096); then the device memory of
# qlora, lora and bf16 full fine-tuning from the same weights saved in bf16. Results go in
# docs/PERFORMANCE.md.
#
#   bash bench/gpu_train.sh                 # on the GPU machine (builds there first)
#   bash bench/gpu_train.sh --cpu-dry-run   # here: the same steps, a tiny shape, on the CPU
#
# MFU counts 6 x N (N: parameters outside the input embedding) + 12 x layers x hidden x
# sequence FLOPs per token (PaLM's accounting); the peak is 989 TFLOP/s (H100/H200 SXM
# dense bf16; set PEAK_TFLOPS for another GPU). LoRA's MFU uses the same count, as the
# peers report it, although a frozen base skips its weight-gradient GEMMs (~4N of work).
# Both sides train at a constant lr 1e-4 (fthost: min_lr_ratio = 1), so losses compare. The GPU machine has no network: the build's .deb files come from
# scripts/fetch_debs.sh (FTHOST_DEBS) and the peer's wheels from
# scripts/fetch_peer_wheels.sh (FTHOST_WHEELS).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# WORK is scratch; the device tool's $OUT, when set, gets the logs back even on failure.
WORK="$(mktemp -d)"
trap 'if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
phase() { echo "[$(date +%T)] $*"; }

if [ "${1:-}" = "--cpu-dry-run" ]; then
  DEVICE=cpu; PY="${FTHOST_PEER_PYTHON:-$HOME/.cache/fthost/peer-venv/bin/python}"
  BUILD="${FTHOST_BUILD_DIR:-$ROOT/build}"
  cmake --build "$BUILD" -j 2 --target fthost >/dev/null
  SHAPE=(64 128 2 4 2 320); SEQ=128; BATCH=2; STEPS=5; NEW_TOKENS=16
else
  DEVICE=cuda; PY=python3
  phase "environment"
  source "$ROOT/bench/gpu_env.sh"
  WHEELS="${FTHOST_WHEELS:-$ROOT/shared/wheels}"
  "$PY" -c 'import transformers, peft' 2>/dev/null ||
    pip install -q --no-index --find-links "$WHEELS" transformers peft >/dev/null
  BUILD="${FTHOST_BUILD_DIR:-/tmp/fthost-gpu-build}"
  phase "configure"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${FTHOST_CMAKE_ARGS[@]}" \
    -DFTHOST_BUILD_TESTS=OFF -DTORCH_CUDA_ARCH_LIST=9.0 >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log"; exit 1; }
  phase "build"
  cmake --build "$BUILD" -j "$(nproc)" --target fthost fthost_decoder fthost_full fthost_lora fthost_causal_lm fthost_logprobs_bench \
    >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
  SHAPE=(2048 5632 22 32 4 32000); SEQ=2048; BATCH="${BATCH:-8}"; STEPS="${STEPS:-20}"; NEW_TOKENS=128
fi
read -r HIDDEN INTER LAYERS HEADS KV VOCAB <<<"${SHAPE[*]}"
echo "date: $(date -u +%Y-%m-%d)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)  device: $DEVICE"

# Rows of one document each, longer than the sequence (truncated to it): no padding, no
# packing, so both sides take the flash path.
python3 bench/long_rows.py "$WORK/rows.jsonl" "$SEQ"
phase "starting weights"
"$PY" - "$WORK/init" "$HIDDEN" "$INTER" "$LAYERS" "$HEADS" "$KV" "$VOCAB" 2>"$WORK/init.log" <<'PY' || { tail -20 "$WORK/init.log"; exit 1; }
import json, pathlib, sys, torch, transformers
out = pathlib.Path(sys.argv[1]); h, i, l, a, kv, v = (int(x) for x in sys.argv[2:8])
cfg = transformers.LlamaConfig(vocab_size=v, hidden_size=h, intermediate_size=i, num_hidden_layers=l, num_attention_heads=a,
                               num_key_value_heads=kv, max_position_embeddings=4096, rms_norm_eps=1e-5,
                               tie_word_embeddings=False, initializer_range=0.02)
torch.manual_seed(0)
transformers.LlamaForCausalLM(cfg).save_pretrained(out)
(out / "stage.json").write_text(json.dumps({"format": "fthost-stage-1", "model_plugin": "decoder", "model_config": {
    "vocab_size": v, "hidden_size": h, "intermediate_size": i, "num_hidden_layers": l, "num_attention_heads": a,
    "num_key_value_heads": kv, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False}}))
PY

mfu() {  # mfu TOKENS_PER_S
  python3 -c "
h,i,l,v,s=$HIDDEN,$INTER,$LAYERS,$VOCAB,$SEQ
kvd=h*$KV//$HEADS
n=l*(2*h*h+2*h*kvd+3*h*i+2*h)+h+v*h
print(f'{(6*n+12*l*h*s)*$1/(${PEAK_TFLOPS:-989}e12)*100:.1f}%')"
}

printf "%-7s %-5s %10s %6s %10s %10s\n" trainer mode "tok/s" MFU "peak MB" "last loss"
for mode in full lora; do
  if [ "$mode" = lora ]; then param=$'plugin = "lora"\nr = 16\nlora_alpha = 32.0\ntarget_modules = ["all-linear"]'
  else param='plugin = "full"'; fi
  cat > "$WORK/$mode.toml" <<TOML
[run]
output_dir = "$WORK/run_$mode"
device = "$DEVICE"
precision = "bf16"
[[stage]]
name = "train"
init_from = "$WORK/init"
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
min_lr_ratio = 1.0
log_every = 1
[stage.eval]
base = false
TOML
  phase "$mode: fthost"
  "$BUILD/fthost" run "$WORK/$mode.toml" >"$WORK/$mode.log" 2>&1 || { tail -20 "$WORK/$mode.log"; exit 1; }
  read -r tps peak last < <(python3 - "$WORK/run_$mode" <<'PY'
import json, sys
d = sys.argv[1]
lines = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if '"loss"' in l and "eval/" not in l]
timed = lines[3:] if len(lines) > 3 else lines  # after warm-up, as the peer's
st = json.load(open(f"{d}/summary.json"))["stages"][0]
# Steps have equal tokens: total tokens over total time, as the peer reports it.
print(len(timed) / sum(1 / m["tokens_per_s"] for m in timed), st.get("cuda_peak_mb", 0.0), lines[-1]["loss"])
PY
)
  printf "%-7s %-5s %10.0f %6s %10.0f %10.4f\n" fthost "$mode" "$tps" "$(mfu "$tps")" "$peak" "$last"
  phase "$mode: transformers + PEFT"
  peer="$("$PY" bench/peer/hf_train.py "$WORK/init" "$WORK/rows.jsonl" "$mode" "$STEPS" "$SEQ" "$BATCH" "$DEVICE" 2>"$WORK/peer.log" | tail -1)" ||
    { tail -20 "$WORK/peer.log"; exit 1; }
  read -r ptps ppeak plast < <(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r['tokens_per_s'], r['peak_mb'], r['last_loss'])" "$peer")
  printf "%-7s %-5s %10.0f %6s %10.0f %10.4f   fthost/peer %.2fx\n" hf "$mode" "$ptps" "$(mfu "$ptps")" "$ppeak" "$plast" \
    "$(python3 -c "print($tps/$ptps)")"
  python3 -c "import json,sys; print('peer versions:', json.loads(sys.argv[1])['versions'])" "$peer"
done

# Decoding with the same weights (greedy, so both ways give the same tokens): each decode
# step replayed from a CUDA graph vs every kernel launched, one prompt at a time and 8
# together. On the CPU (dry run) graphs are unavailable and both lines launch kernels.
phase "decoding"
head -n 8 data/quickstart/eval.jsonl >"$WORK/prompts.jsonl"
printf "\n%-30s %s\n" "decode (fthost generate)" "completions, tokens, seconds, tokens/s"
for bs in 1 8; do
  for flag in "" --no-cuda-graphs; do
    line=$("$BUILD/fthost" generate "$WORK/init" --input "$WORK/prompts.jsonl" --output "$WORK/gen.jsonl" \
             --device "$DEVICE" --batch-size "$bs" --max-new-tokens "$NEW_TOKENS" $flag 2>&1 >/dev/null |
           grep "fthost generate:") || { echo "fthost generate failed"; exit 1; }
    label="batch $bs, CUDA graphs"; [ -n "$flag" ] && label="batch $bs, $flag"
    printf "%-30s %s\n" "$label" "${line#fthost generate: }"
  done
done

# The loss step's device memory at Llama 3's vocabulary and hidden size, chunked vs not.
if [ "$DEVICE" = cuda ]; then
  phase "chunked log-probs"
  "$BUILD/fthost_logprobs_bench" --device cuda --tokens 8192 --vocab 128256 --hidden 4096
fi

# Memory at the checkpoint's stored dtype: the same weights saved in bf16, two steps of
# qlora, lora (frozen bf16 base, fp32 adapters) and full with bf16 weights (fp32 masters
# in AdamW), each process's device peak while loading (and quantising: qlora takes its
# base in host memory and quantises one weight at a time on the device) and while
# training, next to the bf16 file's size.
phase "memory at stored dtypes"
"$PY" - "$WORK/init" "$WORK/init_bf16" 2>"$WORK/bf16.log" <<'PY' || { tail -20 "$WORK/bf16.log"; exit 1; }
import pathlib, shutil, sys, torch, transformers
transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16).save_pretrained(sys.argv[2])
shutil.copy(pathlib.Path(sys.argv[1]) / "stage.json", sys.argv[2])  # fthost's stage: the byte tokenizer
PY
printf "\nbf16 checkpoint: %.0f MB\n" "$(python3 -c "import os,sys; print(sum(os.path.getsize(os.path.join(sys.argv[1], f)) for f in os.listdir(sys.argv[1]) if f.endswith('.safetensors')) / 2**20)" "$WORK/init_bf16")"
printf "%-12s %10s %16s %16s\n" param "load s" "load peak MB" "train peak MB"
for param in qlora lora full_bf16; do
  case "$param" in
    full_bf16) section=$'plugin = "full"\nweight_dtype = "bfloat16"' ;;
    *) section="plugin = \"$param\""$'\nr = 16\nlora_alpha = 32.0\ntarget_modules = ["all-linear"]' ;;
  esac
  cat > "$WORK/mem_$param.toml" <<TOML
[run]
output_dir = "$WORK/mem_$param"
device = "$DEVICE"
precision = "bf16"
[[stage]]
name = "tune"
init_from = "$WORK/init_bf16"
[stage.param]
$section
[stage.objective]
plugin = "cpt"
[stage.data]
train = "$WORK/rows.jsonl"
max_seq_len = $SEQ
shuffle = false
[stage.train]
steps = 2
batch_size = 1
[stage.eval]
base = false
TOML
  "$BUILD/fthost" run "$WORK/mem_$param.toml" >"$WORK/mem_$param.log" 2>&1 || { tail -20 "$WORK/mem_$param.log"; exit 1; }
  python3 - "$WORK/mem_$param/summary.json" "$param" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["stages"][0]
print(f"{sys.argv[2]:<12} {st['load_seconds']:>10.1f} {st.get('load_cuda_peak_mb', st['load_peak_rss_mb']):>16.0f} "
      f"{st.get('cuda_peak_mb', st['train_peak_rss_mb']):>16.0f}")
PY
  rm -rf "$WORK/mem_$param"
done
