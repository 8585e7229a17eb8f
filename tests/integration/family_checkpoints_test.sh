#!/usr/bin/env bash
# configs/finetune_checkpoint.toml on one tiny checkpoint of every decoder family
# (tests/fixtures/hf/chat_<family>, make_family_checkpoints.py: each with its own
# tokenizer, special tokens and published chat template), end to end:
#   train a few LoRA steps on the chat data rendered with the checkpoint's template (the
#   held-out loss falls), merge, and check that the merged checkpoint has the base's
#   tensors (names, shapes, dtypes) and config; then, with the fixtures venv
#   (scripts/make_fixtures_env.sh), that transformers loads the merged checkpoint and PEFT
#   the adapter, and that `fthost verify` computes their logits (fp32, 1e-4).
# Usage: family_checkpoints_test.sh FTHOST SOURCE_DIR
set -u
FTHOST="$1"
SRC="$2"
PY="${FTHOST_FIXTURES_PYTHON:-$HOME/.cache/fthost/fixtures-venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass=0
fail() { echo "FAIL $1"; [ -n "${2:-}" ] && echo "$2" | tail -20; failures=$((failures + 1)); }

# Gemma 2's and Mistral's templates have no system turn: their data leaves it out, as a
# user of those models must.
python3 - "$SRC/data/quickstart" "$WORK" <<'EOF'
import json, pathlib, sys
src, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for split in ("train", "eval"):
    rows = [json.loads(l) for l in (src / f"chat_{split}.jsonl").read_text().splitlines()][:400]
    (work / f"no_system_{split}.jsonl").write_text("".join(
        json.dumps({"messages": [m for m in r["messages"] if m["role"] != "system"]}) + "\n" for r in rows))
EOF

# The names, shapes and dtypes of every tensor in a checkpoint directory's safetensors.
tensors() {
  python3 - "$1" <<'EOF'
import json, pathlib, struct, sys
out = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.safetensors")):
    with open(f, "rb") as h:
        header = json.loads(h.read(struct.unpack("<Q", h.read(8))[0]))
    out.update({k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"})
print(json.dumps(out, sort_keys=True))
EOF
}

have_venv=0
if [ -x "$PY" ] && "$PY" -c "import transformers, peft" 2>/dev/null; then have_venv=1; fi
[ "$have_venv" -eq 1 ] || echo "note: no fixtures venv at $PY: the transformers/PEFT checks are not run"

for family in llama3 mistral qwen3 gemma2 gemma3 phi3 mixtral qwen3_moe; do
  BASE="$SRC/tests/fixtures/hf/chat_$family"
  RUN="$WORK/$family"
  data=()
  case "$family" in
    mistral | gemma2 | mixtral)
      data=(--set stage.finetune.data.train="$WORK/no_system_train.jsonl" --set stage.finetune.data.eval="$WORK/no_system_eval.jsonl") ;;
  esac
  # PEFT loads expert adapters onto transformers 5's fused experts (its ParamWrapper),
  # which refuses lora_dropout != 0 (docs/CONFIG.md).
  case "$family" in mixtral | qwen3_moe) data+=(--set stage.finetune.param.lora_dropout=0.0) ;; esac
  out="$("$FTHOST" run "$SRC/configs/finetune_checkpoint.toml" --set stage.finetune.init_from="$BASE" \
    --set run.output_dir="$RUN" --set stage.finetune.train.steps=8 --set stage.finetune.train.lr=3e-3 \
    --set stage.finetune.train.warmup_steps=2 --set stage.finetune.eval.max_examples=8 \
    --set stage.finetune.eval.max_new_tokens=4 --set run.threads=1 "${data[@]}" 2>&1)"
  if [ $? -ne 0 ]; then fail "$family: the recipe failed" "$out"; continue; fi
  # "loss A -> B" of the held-out eval: B below A.
  if ! awk '/finetune \[completed\]/ { for (i = 1; i <= NF; i++) if ($i == "loss") { exit !($(i + 3) < $(i + 1)) } ; exit 1 }' <<<"$out"; then
    fail "$family: the held-out loss did not fall" "$out"
  else pass=$((pass + 1)); fi
  FINAL="$RUN/stages/finetune/final"
  MERGED="$WORK/${family}_merged"
  out="$("$FTHOST" merge "$FINAL" --out "$MERGED" 2>&1)"
  if [ $? -ne 0 ]; then fail "$family: merge failed" "$out"; continue; fi
  if [ "$(tensors "$MERGED")" = "$(tensors "$BASE")" ]; then pass=$((pass + 1)); else
    fail "$family: the merged checkpoint's tensors differ from the base's" "$(diff <(tensors "$BASE" | tr ',' '\n') <(tensors "$MERGED" | tr ',' '\n'))"
  fi
  if [ "$have_venv" -eq 0 ]; then continue; fi
  out="$("$PY" "$SRC/scripts/check_with_transformers.py" "$MERGED" --adapter "$FINAL" 2>&1)"
  if [ $? -ne 0 ]; then fail "$family: transformers / PEFT could not load the result" "$out"; continue; fi
  for pair in "$MERGED:$MERGED.logits.json" "$FINAL:$FINAL.peft_logits.json"; do
    out="$("$FTHOST" verify "${pair%%:*}" --reference "${pair#*:}" --tolerance 1e-4 2>&1)"
    if [ $? -eq 0 ] && grep -q ": PASS" <<<"$out"; then pass=$((pass + 1)); else fail "$family: verify ${pair%%:*}" "$out"; fi
  done
done

echo "families: $pass passed, $failures failed"
[ "$failures" -eq 0 ]
