#!/usr/bin/env bash
# Parameterisations side by side: LoRA, DoRA and QLoRA for the quickstart's fine-tuning
# stage (configs/quickstart.toml's `finetune`, configs/dora.toml, configs/qlora.toml, all
# from the quickstart's pre-trained model), then memory at a scale where base weights
# dominate: a ~100M-parameter decoder trained 4 steps with lora and with qlora.
# Prints per run: steps, seconds, tokens/s, held-out exact match, the process's peak RSS
# while loading (and quantising) the model and during the training loop, and qlora's
# bytes per base weight as it reports them.
# Usage: bash bench/params.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PRE="$OUT/quickstart/stages/pretrain/final"

bench_header

row() {  # row LABEL RUN_DIR STAGE LOG
  python3 - "$2/summary.json" "$1" "$3" "$4" <<'PY'
import json, re, sys
summary, label, stage, log = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], open(sys.argv[4]).read()
st = next(s for s in summary["stages"] if s["name"] == stage)
em = st["eval"].get("exact_match")
bpp = re.findall(r"([0-9.]+) bytes per base weight", log)
print(f"{label:<22} {st['steps']:>5} {st['seconds']:>7.1f} {st['tokens_per_s']:>8.0f}  "
      f"{'-' if em is None else f'{em:.3f}':>6}  {st['load_peak_rss_mb']:>9.0f} {st['train_peak_rss_mb']:>9.0f}  "
      f"{bpp[-1] if bpp else '-'}")
PY
}
run() {  # run LABEL CONFIG STAGE [--set ...]
  local label="$1" config="$2" stage="$3"
  shift 3
  "$BUILD/fthost" run "$config" --set "run.output_dir=$OUT/$label" "$@" >/dev/null 2>"$OUT/$label.log"
  row "$label" "$OUT/$label" "$stage" "$OUT/$label.log"
}

printf "%-22s %5s %7s %8s  %6s  %9s %9s  %s\n" run steps s tok/s EM "load MB" "train MB" "bytes/weight"
run quickstart configs/quickstart.toml finetune   # its finetune stage is the LoRA variant
run dora configs/dora.toml finetune --set "stage.finetune.init_from=\"$PRE\""
run qlora configs/qlora.toml finetune --set "stage.finetune.init_from=\"$PRE\""
run qlora_300_steps configs/qlora.toml finetune --set "stage.finetune.init_from=\"$PRE\"" --set stage.finetune.train.steps=300
run qdora configs/qlora.toml finetune --set "stage.finetune.init_from=\"$PRE\"" --set stage.finetune.param.use_dora=true

# Memory where the base weights dominate: hidden 1024, 8 layers, MLP 2816 (~103M
# parameters in linear sites, 412 MB in fp32). One step of full training makes the base.
cat > "$OUT/big.toml" <<EOF
[run]
output_dir = "$OUT/big"
seed = 1
threads = 2
[[stage]]
name = "base"
[stage.model]
plugin = "decoder"
hidden_size = 1024
intermediate_size = 2816
num_hidden_layers = 8
num_attention_heads = 16
[stage.param]
plugin = "full"
[stage.objective]
plugin = "sft"
[stage.data]
train = "data/quickstart/train.jsonl"
max_seq_len = 128
[stage.train]
steps = 1
batch_size = 2
EOF
for p in lora qlora; do
  cat >> "$OUT/big.toml" <<EOF
[[stage]]
name = "$p"
init_from = "base"
[stage.param]
plugin = "$p"
r = 16
lora_alpha = 32.0
target_modules = ["all-linear"]
[stage.objective]
plugin = "sft"
[stage.data]
train = "data/quickstart/train.jsonl"
max_seq_len = 128
[stage.train]
steps = 4
batch_size = 4
EOF
done
"$BUILD/fthost" run "$OUT/big.toml" >/dev/null 2>"$OUT/big.log"
echo
echo "~100M-parameter decoder, 4 steps, batch 4 x 128 tokens:"
printf "%-22s %5s %7s %8s  %6s  %9s %9s  %s\n" run steps s tok/s EM "load MB" "train MB" "bytes/weight"
row big_lora "$OUT/big" lora /dev/null
row big_qlora "$OUT/big" qlora "$OUT/big.log"
