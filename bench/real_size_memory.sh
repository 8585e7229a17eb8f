#!/usr/bin/env bash
# Memory and load time at real sizes: random Qwen2-shaped bf16 checkpoints of ~0.4B and
# ~1B parameters (bench/peer/make_checkpoint.py, written here, not shipped), trained two
# steps of one 64-token row with LoRA r=16 on every linear layer — fthost lora and qlora
# next to transformers + PEFT (dtype "auto") and transformers + bitsandbytes' 4-bit load +
# PEFT on the same files. Prints per run: load seconds, the process's peak RSS while
# loading (and quantising) and during the two steps, and the base weights' bytes per
# parameter. The checkpoint's own size is printed above each table.
# Usage: bash bench/real_size_memory.sh [BUILD_DIR] [SIZES]   (SIZES: "0.4b 1b" by default)
# Needs the fixtures environment (scripts/make_fixtures_env.sh: transformers, PEFT,
# bitsandbytes). Results go in docs/PERFORMANCE.md.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SIZES="${2:-0.4b 1b}"
PY="${FTHOST_CACHE:-$HOME/.cache/fthost}/fixtures-venv/bin/python"
[ -x "$PY" ] || bash scripts/make_fixtures_env.sh >&2
STEPS=2
SEQ=64

shape() {  # hidden intermediate layers heads kv_heads vocab
  case "$1" in
    0.4b) echo "1024 2816 24 16 4 151936" ;;
    1b) echo "2048 5632 16 16 4 151936" ;;
    *) echo "unknown size $1 (0.4b or 1b)" >&2; exit 2 ;;
  esac
}

fthost_row() {  # fthost_row PARAM CKPT
  local param="$1" ckpt="$2" dir="$OUT/run_$1"
  cat > "$OUT/$param.toml" <<EOF
[run]
output_dir = "$dir"
seed = 1
threads = 2
[[stage]]
name = "tune"
init_from = "$ckpt"
[stage.param]
plugin = "$param"
r = 16
lora_alpha = 32.0
target_modules = ["all-linear"]
[stage.objective]
plugin = "sft"
[stage.data]
train = "data/quickstart/train.jsonl"
max_seq_len = $SEQ
packing = true
[stage.train]
steps = $STEPS
batch_size = 1
eval_every = 0
EOF
  local t0=$(date +%s.%N)
  "$BUILD/fthost" run "$OUT/$param.toml" >/dev/null 2>"$OUT/$param.log" || { cat "$OUT/$param.log" >&2; exit 1; }
  python3 - "$dir/summary.json" "fthost $param" "$OUT/$param.log" <<'PY'
import json, re, sys
st = json.load(open(sys.argv[1]))["stages"][0]
bpp = re.findall(r"([0-9.]+) bytes per base weight", open(sys.argv[3]).read())
print(f"{sys.argv[2]:<28} {st['load_seconds']:>7.1f} "
      f"{st['load_peak_rss_mb']:>9.0f} {st['train_peak_rss_mb']:>9.0f}  "
      f"{'linear sites ' + bpp[-1] + ' B/weight (NF4), the rest as stored' if bpp else 'as stored (bf16)'}")
PY
  rm -rf "$dir"
}

peer_row() {  # peer_row MODE CKPT
  "$PY" bench/peer/hf_memory.py "$2" "$1" "$STEPS" "$SEQ" data/quickstart/train.jsonl >"$OUT/peer_$1.json" \
    2>"$OUT/peer_$1.log" || { cat "$OUT/peer_$1.log" >&2; exit 1; }
  python3 - "$OUT/peer_$1.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
# bitsandbytes packs two 4-bit codes per uint8 element: count them as the weights they hold.
print(f"{r['framework']:<28} {r['load_s']:>7.1f} {r['load_peak_rss_mb']:>9.0f} {r['train_peak_rss_mb']:>9.0f}  "
      f"{r['base_bytes'] / 2**20:.0f} MB frozen")
PY
}

bench_header
for size in $SIZES; do
  ckpt="$OUT/ckpt_$size"
  "$PY" bench/peer/make_checkpoint.py "$ckpt" $(shape "$size") 500MB >/dev/null 2>"$OUT/make.log" ||
    { cat "$OUT/make.log" >&2; exit 1; }
  # The tokenizer of the bundled Qwen2 chat fixture (its ids fit the vocabulary).
  cp tests/fixtures/hf/qwen2_chat/{tokenizer.json,tokenizer_config.json,chat_template.jinja} "$ckpt/"
  params=$("$PY" -c "import json,sys; m=json.load(open(sys.argv[1]))['metadata']; print(m.get('total_parameters', 0))" \
    "$ckpt/model.safetensors.index.json" 2>/dev/null || echo 0)
  echo
  echo "$size: $(shape "$size") (hidden inter layers heads kv vocab), $(du -sm --apparent-size "$ckpt" | cut -f1) MB on disk, $params parameters"
  printf "%-28s %7s %9s %9s  %s\n" run "load s" "load MB" "train MB" "frozen base"
  fthost_row lora "$ckpt"
  fthost_row qlora "$ckpt"
  peer_row lora "$ckpt"
  peer_row qlora "$ckpt"
  rm -rf "$ckpt"
done
