#!/usr/bin/env bash
# The command line end to end: exit codes and messages. Usage: cli_test.sh FTHOST SOURCE_DIR
set -u
FTHOST="$1"
SRC="$2"
BROKEN="$(dirname "$FTHOST")/test_plugins/broken"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failures=0
pass=0

check() {  # check NAME EXPECTED_EXIT PATTERN -- command...
  local name="$1" want="$2" pattern="$3"
  shift 4
  local out rc
  out="$("$@" 2>&1)"
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, expected $want"; echo "$out" | head -20; failures=$((failures + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/"; echo "$out" | head -20; failures=$((failures + 1)); return
  fi
  pass=$((pass + 1))
}

check "no command" 1 "usage: fthost" -- "$FTHOST"
check "help" 0 "commands:" -- "$FTHOST" --help
check "unknown command" 1 "unknown command 'fly'" -- "$FTHOST" fly
for cmd in run validate plugins eval generate merge verify; do
  check "$cmd --help" 0 "usage: fthost $cmd" -- "$FTHOST" "$cmd" --help
done
check "run without config" 1 "config" -- "$FTHOST" run
check "run unknown option" 1 "unrecognised option|unrecognized option" -- "$FTHOST" run x.toml --bogus

check "plugins lists kinds" 0 "decoder +model .*lora +param .*sft +objective .*exact_match +grader" -- \
  bash -c "'$FTHOST' plugins | tr '\n' ' '"
check "plugins --options" 0 "target_modules" -- "$FTHOST" plugins --options
# Broken plugins on FTHOST_PLUGIN_PATH: one refusal line each, and the command goes on.
check "plugins refuses broken" 0 "refused plugin .*libbroken_abi_major.so: ABI major 2 differs" -- \
  env FTHOST_PLUGIN_PATH="$BROKEN" "$FTHOST" plugins
check "plugins still lists good" 0 "good_grader +grader" -- env FTHOST_PLUGIN_PATH="$BROKEN" "$FTHOST" plugins
n_refused=$(FTHOST_PLUGIN_PATH="$BROKEN" "$FTHOST" plugins 2>&1 >/dev/null | grep -c "refused plugin")
[ "$n_refused" -eq 9 ] && pass=$((pass + 1)) || { echo "FAIL expected 9 refusal lines, got $n_refused"; failures=$((failures + 1)); }
check "plugins refuses a fields model without encode_row" 0 "broken_model_fields_without_encode.so: model .* declares FT_INPUT_FIELDS without encode_row" -- \
  env FTHOST_PLUGIN_PATH="$BROKEN" "$FTHOST" plugins

# A model that reads no text (tests/plugins/toys) trained by `fthost run` from its plugin folder.
TOYS="$(dirname "$FTHOST")/test_plugins/toys"
awk 'BEGIN { srand(7); for (i = 0; i < 64; i++) {
  c = int(rand() * 8); n = 6 + int(rand() * 6); line = "{\"events\": ["
  for (t = 0; t < n; t++) {
    line = line (t ? ", " : "") "{\"mcc\": " c ", \"amount\": " sprintf("%.2f", 1.5 ^ c) "}"
    c = rand() < 0.9 ? (c + 1) % 8 : int(rand() * 8)
  }
  print line "]}" } }' > "$WORK/events.jsonl"
cat > "$WORK/events.toml" <<EOF2
[run]
output_dir = "$WORK/events_run"
[[stage]]
name = "events"
[stage.model]
plugin = "toy_events"
[stage.param]
plugin = "full"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "$WORK/events.jsonl"
eval_fraction = 0.25
packing = true
[stage.train]
steps = 20
batch_size = 8
EOF2
check "validate: fields are never packed" 2 "events.toml:[0-9]+:[0-9]+: .*toy_events' reads its own fields .* set packing = false" -- \
  env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" validate "$WORK/events.toml"
sed -i 's/^packing = true$/packing = false/' "$WORK/events.toml"
check "run: a model without text" 0 "events +\[completed\] +loss" -- env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" run "$WORK/events.toml"
check "run: no tokenizer written for it" 1 "" -- test -e "$WORK/events_run/stages/events/final/tokenizer.json"
check "generate: a model without text" 1 "reads or predicts no text" -- \
  env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" generate "$WORK/events_run/stages/events/final" --prompt x

# An image-conditioned model: trained, then generating from rows that carry their image.
awk 'BEGIN { srand(3); split("top bottom left right", names, " "); for (i = 0; i < 48; i++) {
  h = i % 4; img = ""
  for (y = 0; y < 8; y++) {
    row = ""
    for (x = 0; x < 8; x++) {
      b = (h == 0 && y < 4) || (h == 1 && y >= 4) || (h == 2 && x < 4) || (h == 3 && x >= 4)
      row = row (x ? ", " : "") sprintf("%.2f", (b ? 0.65 : 0) + rand() * 0.35)
    }
    img = img (y ? ", " : "") "[" row "]"
  }
  print "{\"image\": [" img "], \"prompt\": \"shape:\", \"completion\": \" " names[h + 1] "\"}" } }' > "$WORK/images.jsonl"
cat > "$WORK/images.toml" <<EOF2
[run]
output_dir = "$WORK/images_run"
[[stage]]
name = "caption"
[stage.model]
plugin = "toy_captioner"
[stage.param]
plugin = "full"
[stage.objective]
plugin = "sft"
[stage.data]
train = "$WORK/images.jsonl"
max_seq_len = 32
[stage.train]
steps = 10
batch_size = 8
EOF2
check "run: an image-conditioned model" 0 "caption +\[completed\]" -- env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" run "$WORK/images.toml"
check "generate: rows with their images" 0 '"completion":.*"finish_reason":"(stop|length)"' -- env FTHOST_PLUGIN_PATH="$TOYS" \
  "$FTHOST" generate "$WORK/images_run/stages/caption/final" --input "$WORK/images.jsonl" --max-new-tokens 4 --num-generations 2
check "generate: an image model needs rows" 1 "reads fields besides the prompt .* --input" -- env FTHOST_PLUGIN_PATH="$TOYS" \
  "$FTHOST" generate "$WORK/images_run/stages/caption/final" --prompt "shape:"
# An encoder-decoder: the prompt is its source, generation starts from its start id.
awk 'BEGIN { srand(5); for (i = 0; i < 32; i++) { w = ""; for (k = 0; k < 4; k++) w = w substr("abcdef", 1 + int(rand() * 6), 1)
  r = ""; for (k = 4; k > 0; k--) r = r substr(w, k, 1)
  print "{\"prompt\": \"reverse: " w "\", \"completion\": \" " r "\"}" } }' > "$WORK/reverse.jsonl"
sed -e "s|images_run|seq2seq_run|; s|images.jsonl|reverse.jsonl|; s|toy_captioner|toy_seq2seq|" "$WORK/images.toml" > "$WORK/seq2seq.toml"
check "run: an encoder-decoder" 0 "caption +\[completed\]" -- env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" run "$WORK/seq2seq.toml"
check "generate: an encoder-decoder from a prompt" 0 '"completion":.*"finish_reason":"(stop|length)".*"prompt":"reverse: abc"' -- \
  env FTHOST_PLUGIN_PATH="$TOYS" "$FTHOST" generate "$WORK/seq2seq_run/stages/caption/final" --prompt "reverse: abc" --max-new-tokens 4
printf '{"image": [[0.5]], "prompt": "shape:"}\n' > "$WORK/bad_image.jsonl"
check "generate: a bad image at its line" 1 "bad_image.jsonl:1: .*field 'image' must be a list of 8 rows" -- env FTHOST_PLUGIN_PATH="$TOYS" \
  "$FTHOST" generate "$WORK/images_run/stages/caption/final" --input "$WORK/bad_image.jsonl"

check "validate quickstart" 0 "quickstart.toml: ok" -- "$FTHOST" validate "$SRC/configs/quickstart.toml"
cat > "$WORK/bad.toml" <<'TOML'
[run]
output_dir = "x"
sead = 1

[[stage]]
name = "s"
[stage.model]
plugin = "decoder"
hidden_size = "big"
[stage.param]
plugin = "lora"
[stage.objective]
plugin = "sfft"
[stage.data]
train = "t.jsonl"
[stage.train]
steps = 1
TOML
# 4: the three above and the missing data file t.jsonl
check "validate reports every error" 2 "4 error\(s\)" -- "$FTHOST" validate "$WORK/bad.toml"
check "validate names line:col" 2 "bad.toml:3:1: unknown key 'sead'" -- "$FTHOST" validate "$WORK/bad.toml"
check "validate wrong type" 2 "bad.toml:9:1: key 'hidden_size' .* must be an integer" -- "$FTHOST" validate "$WORK/bad.toml"
check "validate unknown plugin" 2 "bad.toml:13:10: no objective plugin named 'sfft'" -- "$FTHOST" validate "$WORK/bad.toml"
check "validate --set" 0 ": ok" -- "$FTHOST" validate "$SRC/configs/quickstart.toml" --set stage.finetune.param.r=4
check "run bad config" 2 "error\(s\)" -- "$FTHOST" run "$WORK/bad.toml"
# validate opens what it can check cheaply, and range-checks host options.
sed -e 's/^sead = 1$/threads = -3/' -e 's/^hidden_size = "big"$/hidden_size = 32/' -e 's/"sfft"/"sft"/' \
  "$WORK/bad.toml" > "$WORK/inputs.toml"
check "validate: threads range" 2 "inputs.toml:3:1: threads must be at least 0" -- "$FTHOST" validate "$WORK/inputs.toml"
check "validate: a missing data file" 2 "inputs.toml:15:1: data train: t.jsonl: no such file" -- "$FTHOST" validate "$WORK/inputs.toml"
printf '{"text": "a"\n' > "$WORK/broken.jsonl"
sed -i "s|^train = \"t.jsonl\"$|train = \"$WORK/broken.jsonl\"|" "$WORK/inputs.toml"
check "validate: a bad first row" 2 "broken.jsonl:1: malformed JSON" -- "$FTHOST" validate "$WORK/inputs.toml"
check "run: a bad first row, no run directory" 2 "broken.jsonl:1:" -- "$FTHOST" run "$WORK/inputs.toml"
check "a missing FTHOST_PLUGIN_PATH folder is named" 0 "warning: plugin folder $WORK/nope does not exist" -- \
  env FTHOST_PLUGIN_PATH="$WORK/nope" "$FTHOST" plugins

# A tiny real run, then eval of its stage, then a refused second run into the same dir.
cat > "$WORK/tiny.toml" <<TOML
[run]
output_dir = "$WORK/run"
[[stage]]
name = "sft"
[stage.model]
plugin = "decoder"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
[stage.param]
plugin = "lora"
[stage.objective]
plugin = "sft"
[stage.data]
train = "$SRC/data/quickstart/train.jsonl"
eval = "$SRC/data/quickstart/eval.jsonl"
max_seq_len = 96
[stage.train]
steps = 2
batch_size = 2
[stage.eval]
max_examples = 4
max_new_tokens = 2
[[stage.grader]]
plugin = "exact_match"
TOML
check "run tiny" 0 "run directory: $WORK/run" -- "$FTHOST" run "$WORK/tiny.toml"
check "eval tiny" 0 '"exact_match": ' -- "$FTHOST" eval "$WORK/tiny.toml" --stage sft
check "eval unknown stage" 1 "no stage named 'nope'" -- "$FTHOST" eval "$WORK/tiny.toml" --stage nope
check "run refuses existing dir" 1 "already exists and is not empty: pass --resume" -- "$FTHOST" run "$WORK/tiny.toml"
check "resume finished run" 0 "run directory" -- "$FTHOST" run "$WORK/tiny.toml" --resume "$WORK/run"

# SIGTERM mid-run: the step finishes, a checkpoint is written (checkpoint_every = 0 here),
# summary.json says "interrupted", the exit code is 128 + 15, and --resume finishes the
# stage from that checkpoint. (A second signal's immediate exit: Signals.* in fthost_tests.)
sed -e "s|$WORK/run\"|$WORK/sig_run\"|" -e 's/^steps = 2$/steps = 1500\ncheckpoint_every = 0\nlog_every = 1/' \
  "$WORK/tiny.toml" > "$WORK/sig.toml"
"$FTHOST" run "$WORK/sig.toml" > "$WORK/sig.out" 2>&1 &
pid=$!
for _ in $(seq 300); do  # until 3 steps are logged (30 s at most)
  [ "$(grep -c '"step"' "$WORK/sig_run/metrics.jsonl" 2>/dev/null)" -ge 3 ] 2>/dev/null && break
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid"
rc=$?
step=$(ls "$WORK/sig_run/stages/sft/checkpoints" 2>/dev/null | sed 's/step-//' | sort -n | tail -1)
if [ "$rc" -eq 143 ] && [ -n "$step" ] && grep -q '"status": "interrupted"' "$WORK/sig_run/summary.json" &&
   grep -q "continue with: fthost run" "$WORK/sig.out"; then
  pass=$((pass + 1))
else
  echo "FAIL SIGTERM: exit $rc, checkpoint '$step'"; tail -5 "$WORK/sig.out"; failures=$((failures + 1))
fi
check "resume after SIGTERM" 0 "resumes from .*step-$step" -- "$FTHOST" run "$WORK/sig.toml" --resume "$WORK/sig_run"
check "resumed run completed" 0 '"status": "completed"' -- cat "$WORK/sig_run/summary.json"

# A full disk (here: a 100 KiB file-size limit, so the first checkpoint cannot be
# written): the run fails naming the file and the reason, summary.json says "failed",
# nothing half-written is left, and --resume without the limit completes the stage.
sed -e "s|$WORK/run\"|$WORK/full_run\"|" -e 's/^plugin = "lora"$/plugin = "full"/' \
    -e 's/^steps = 2$/steps = 4\ncheckpoint_every = 2/' "$WORK/tiny.toml" > "$WORK/full.toml"
check "disk full fails naming the file" 1 "cannot write .*full_run/stages/sft/checkpoints/.*: File too large \(free space" -- \
  bash -c "ulimit -f 100; exec '$FTHOST' run '$WORK/full.toml'"
check "disk full recorded as failed" 0 '"status": "failed"' -- cat "$WORK/full_run/summary.json"
leftovers=$(find "$WORK/full_run" -name '.tmp-*' -o -name '.old-*' -o -name 'step-*' | wc -l)
[ "$leftovers" -eq 0 ] && pass=$((pass + 1)) || { echo "FAIL disk full left $leftovers partial files"; find "$WORK/full_run"; failures=$((failures + 1)); }
check "resume after disk full" 0 "run directory" -- "$FTHOST" run "$WORK/full.toml" --resume "$WORK/full_run"
check "resumed after disk full completed" 0 '"status": "completed"' -- cat "$WORK/full_run/summary.json"
# An output folder that cannot be created: a clear error, and no run directory.
touch "$WORK/a_file"
sed -e "s|$WORK/run\"|$WORK/a_file/run\"|" "$WORK/tiny.toml" > "$WORK/unwritable.toml"
check "unwritable output_dir" 1 "cannot create the run directory .*a_file/run: Not a directory" -- \
  "$FTHOST" run "$WORK/unwritable.toml"

# generate from the trained stage: a prompt on the command line, and a JSONL file.
check "generate --help" 0 "usage: fthost generate" -- "$FTHOST" generate --help
check "generate --prompt" 0 '"finish_reason":"(stop|length)"' -- \
  "$FTHOST" generate "$WORK/run/stages/sft/final" --prompt "query: milk" --max-new-tokens 3
printf '{"prompt": "query: bagels\\ncategory:", "id": 7}\n{"prompt": [{"role": "user", "content": "hi"}]}\n' > "$WORK/p.jsonl"
check "generate file" 0 "4 completions" -- "$FTHOST" generate "$WORK/run/stages/sft/final" --input "$WORK/p.jsonl" \
  --output "$WORK/out.jsonl" --num-generations 2 --temperature 1.0 --top-p 0.9 --seed 3 --max-new-tokens 4
n_out=$(wc -l < "$WORK/out.jsonl")
[ "$n_out" -eq 4 ] && grep -q '"id":7' "$WORK/out.jsonl" && pass=$((pass + 1)) || { echo "FAIL generate output rows: $n_out"; failures=$((failures + 1)); }
# --no-cuda-graphs: on the CPU this checks only that the flag is accepted (there are no
# graphs to turn off); what it turns off is tested on a GPU by
# Generate.DecodeStepsReplayedFromACudaGraphGiveTheEagerTokens.
check "generate --no-cuda-graphs is accepted" 0 "4 completions" -- "$FTHOST" generate "$WORK/run/stages/sft/final" \
  --input "$WORK/p.jsonl" --output "$WORK/out_eager.jsonl" --num-generations 2 --temperature 1.0 --top-p 0.9 --seed 3 \
  --max-new-tokens 4 --no-cuda-graphs
printf '{"prompt": "a"}\n{"text": "no prompt"}\n' > "$WORK/bad_p.jsonl"
check "generate bad row" 1 "bad_p.jsonl:2.*needs 'prompt'" -- "$FTHOST" generate "$WORK/run/stages/sft/final" --input "$WORK/bad_p.jsonl"
check "generate needs prompts" 1 "one of the two" -- "$FTHOST" generate "$WORK/run/stages/sft/final"

# merge: the adapter folded in, then generate from the merged stage directory.
check "merge" 0 "adapter merged" -- "$FTHOST" merge "$WORK/run/stages/sft/final" --out "$WORK/merged"
check "generate from merged" 0 '"finish_reason":"(stop|length)"' -- \
  "$FTHOST" generate "$WORK/merged" --prompt "query: milk" --max-new-tokens 3
check "merge needs --out" 1 "--out.*required|required.*out" -- "$FTHOST" merge "$WORK/run/stages/sft/final"
check "merge of a non-stage" 1 "not a stage directory" -- "$FTHOST" merge "$WORK" --out "$WORK/m2"

# verify: a Hugging Face checkpoint against transformers' logits; a mismatch fails.
HF="$SRC/tests/fixtures/hf"
check "verify passes" 0 "max abs diff .*: PASS" -- "$FTHOST" verify "$HF/qwen2_bias" --reference "$HF/qwen2_bias.logits.json"
check "verify fails" 1 ": FAIL" -- "$FTHOST" verify "$HF/llama_gqa_tied" --reference "$HF/qwen2_bias.logits.json"
check "verify an encoder-decoder" 0 "max abs diff .*: PASS" -- "$FTHOST" verify "$HF/t5_v11_resaved_v5" --reference "$HF/t5_v11_resaved_v5.logits.json"
check "verify needs a checkpoint" 1 "neither a stage" -- "$FTHOST" verify "$WORK" --reference "$HF/qwen2_bias.logits.json"
check "generate needs a checkpoint's tokenizer" 1 "without its tokenizer" -- \
  "$FTHOST" generate "$HF/qwen2_bias" --prompt "hi"
check "generate from a checkpoint" 0 '"finish_reason":"(stop|length)"' -- \
  "$FTHOST" generate "$HF/qwen2_chat" --chat --prompt "organic milk" --max-new-tokens 4
printf '[run]\noutput_dir = "%s"\n[[stage]]\nname = "ft"\ninit_from = "%s"\n[stage.param]\nplugin = "lora"\n[stage.objective]\nplugin = "sft"\n[stage.data]\ntrain = "%s"\n[stage.train]\nsteps = 1\n' \
  "$WORK/hf_run" "$HF/qwen2_bias" "$SRC/data/quickstart/train.jsonl" > "$WORK/hf_init.toml"
check "init_from a checkpoint without tokenizer" 2 "hf_init.toml:5:.*without its tokenizer" -- \
  "$FTHOST" validate "$WORK/hf_init.toml"
sed -i 's/^chat_template.*//; s/^train = .*/&\nchat_template = "vicuna"/' "$WORK/hf_init.toml"
check "an unknown chat_template" 2 "hf_init.toml:.*unknown chat template 'vicuna'" -- "$FTHOST" validate "$WORK/hf_init.toml"
printf '[run]\noutput_dir = "%s"\n[[stage]]\nname = "ft"\n[stage.model]\nplugin = "decoder"\n[stage.param]\nplugin = "full"\nweight_dtype = "float8"\n[stage.objective]\nplugin = "sft"\n[stage.data]\ntrain = "%s"\n' \
  "$WORK/wd_run" "$SRC/data/quickstart/train.jsonl" > "$WORK/wd.toml"
check "full's weight_dtype is checked" 2 "wd.toml:9:.*weight_dtype: must be float32 or bfloat16, not 'float8'" -- \
  "$FTHOST" validate "$WORK/wd.toml"

# The recipe: fine-tune a checkpoint directory (the bundled tiny Qwen2) with its own
# tokenizer and chat template, merge, and generate from the merged checkpoint.
# The settings for this 0.1M-parameter model (docs/CONFIG.md): it must learn the answers.
check "finetune_checkpoint recipe learns" 0 "exact_match 0 -> (0\.[5-9]|1)" -- \
  "$FTHOST" run "$SRC/configs/finetune_checkpoint.toml" --set run.output_dir="$WORK/ftc" \
  --set stage.finetune.train.lr=3e-3 --set stage.finetune.train.epochs=4 --set stage.finetune.data.packing=false \
  --set stage.finetune.eval.max_examples=40 --set run.threads=1
FINAL="$WORK/ftc/stages/finetune/final"
for f in adapter_model.safetensors adapter_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
  if [ -f "$FINAL/$f" ]; then pass=$((pass + 1)); else echo "FAIL recipe final/ lacks $f"; failures=$((failures + 1)); fi
done
check "recipe adapter names the checkpoint" 0 "qwen2_chat" -- grep base_model_name_or_path "$FINAL/adapter_config.json"
check "merge a checkpoint's adapter" 0 "with the checkpoint's tokenizer" -- "$FTHOST" merge "$FINAL" --out "$WORK/ftc_merged"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
  if [ -f "$WORK/ftc_merged/$f" ]; then pass=$((pass + 1)); else echo "FAIL merged lacks $f"; failures=$((failures + 1)); fi
done
check "generate from the merged checkpoint" 0 '"finish_reason":"(stop|length)"' -- \
  "$FTHOST" generate "$WORK/ftc_merged" --chat --prompt "organic milk" --max-new-tokens 4

echo "cli: $pass passed, $failures failed"
[ "$failures" -eq 0 ]
