#!/usr/bin/env bash
# Packing on length-skewed data (data/skewed/train.jsonl: 90% one-sentence rows, 10%
# ~1,000-byte documents): the quickstart's model shape trained on it with `cpt` for the
# same number of steps, rows padded to the longest in the batch vs several examples
# packed per row (each attending only to itself), batch 8, max_seq_len 1024, 2 threads.
# Effective tokens/s counts non-padding tokens only. Per-example losses are the same
# packed or not (tests/unit/lora_test.cpp, Lora.PackedEqualsUnpacked...).
# Usage: bash bench/packing.sh [BUILD_DIR]    (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_header
printf "%-8s %6s %10s %12s\n" rows steps tokens "effective/s"
for packing in false true; do
  cat > "$OUT/p.toml" <<TOML
[run]
output_dir = "$OUT/packing_$packing"
seed = 1
threads = 2
[[stage]]
name = "cpt"
[stage.model]
plugin = "decoder"
hidden_size = 128
intermediate_size = 352
num_hidden_layers = 4
num_attention_heads = 4
num_key_value_heads = 2
tie_word_embeddings = true
[stage.param]
plugin = "full"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "data/skewed/train.jsonl"
max_seq_len = 1024
packing = $packing
[stage.train]
steps = ${STEPS:-40}
batch_size = 8
lr = 1e-3
log_every = 1
TOML
  "$BUILD/fthost" run "$OUT/p.toml" >/dev/null 2>"$OUT/p.log" || { cat "$OUT/p.log" >&2; exit 1; }
  python3 - "$OUT/packing_$packing" "$packing" <<'PY'
import json, sys
d, packing = sys.argv[1], sys.argv[2]
st = json.load(open(f"{d}/summary.json"))["stages"][0]
label = "packed" if packing == "true" else "padded"
print(f"{label:<8} {st['steps']:>6} {st['tokens']:>10} {st['tokens_per_s']:>12.0f}")
PY
done
