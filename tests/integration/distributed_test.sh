#!/usr/bin/env bash
# Faults and signals of a 2-rank run over Gloo (docs/DISTRIBUTED.md, "Faults"): a rank
# killed with -9, a rank that hangs, SIGTERM to the launcher and --resume on 2 ranks.
#   bash tests/integration/distributed_test.sh build/fthost .
set -uo pipefail
FTHOST="$(realpath "$1")"
ROOT="$(realpath "$2")"
T="$(mktemp -d)"
trap 'pkill -9 -P $$ 2>/dev/null; rm -rf "$T"' EXIT
pass=0
fail=0
check() {
  if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi
}

config() {  # name steps checkpoint_every
  cat > "$T/$1.toml" <<EOF
[run]
output_dir = "$T/$1"
seed = 5
threads = 1
[run.distributed]
timeout_s = 15.0
[[stage]]
name = "sft"
[stage.model]
plugin = "decoder"
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
[stage.param]
plugin = "full"
[stage.objective]
plugin = "sft"
[stage.data]
train = "$ROOT/data/quickstart/train.jsonl"
max_seq_len = 128
[stage.train]
steps = $2
batch_size = 8
lr = 1e-3
log_every = 1
checkpoint_every = $3
[stage.eval]
base = false
EOF
}

rank_pid() {  # launcher-pid rank
  for c in $(pgrep -P "$1"); do
    tr '\0' '\n' < "/proc/$c/environ" 2>/dev/null | grep -qx "RANK=$2" && echo "$c"
  done
}

wait_lines() {  # file lines seconds
  for _ in $(seq $(($3 * 10))); do
    [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

losses() { grep -o '"loss":[^,]*' "$1/metrics.jsonl"; }

# 1. kill -9 of rank 1 mid-run: rank 0 stops at once naming itself and the step, the
#    launcher names rank 1 and how it died; the run is recorded as failed, and no
#    checkpoint is left half-written.
config kill 100000 3
"$FTHOST" run "$T/kill.toml" --nproc-per-node 2 > "$T/kill.log" 2>&1 &
L=$!
wait_lines "$T/kill/metrics.jsonl" 4 120
R1="$(rank_pid $L 1)"
kill -9 "$R1"
t0=$(date +%s)
wait $L
rc=$?
took=$(($(date +%s) - t0))
check "a killed rank fails the run (exit $rc)" '[ $rc -ne 0 ]'
check "the launcher names the killed rank" 'grep -q "rank 1 (pid $R1) was killed by signal 9" "$T/kill.log"'
check "rank 0 names itself and the step" 'grep -Eq "rank 0 of 2: the .+ of stage .sft. step [0-9]+ failed" "$T/kill.log"'
check "the others stop within seconds (took $took s)" '[ $took -lt 30 ]'
check "summary.json says failed" 'grep -q "\"status\": \"failed\"" "$T/kill/summary.json"'
check "only whole checkpoints" '[ -z "$(ls -A "$T/kill/stages/sft/checkpoints" 2>/dev/null | grep -v "^step-[0-9]*$")" ]'

# 2. A rank that hangs (SIGSTOP): rank 0 stops after [run.distributed] timeout_s, saying so.
config hang 100000 0
"$FTHOST" run "$T/hang.toml" --nproc-per-node 2 > "$T/hang.log" 2>&1 &
L=$!
wait_lines "$T/hang/metrics.jsonl" 2 120
R0="$(rank_pid $L 0)"
R1="$(rank_pid $L 1)"
kill -STOP "$R1"
t0=$(date +%s)
while kill -0 "$R0" 2>/dev/null && [ $(($(date +%s) - t0)) -lt 90 ]; do sleep 0.2; done
took=$(($(date +%s) - t0))
kill -9 "$R1" 2>/dev/null
wait $L
check "rank 0 gives up on a hung rank after the timeout (took $took s)" '[ $took -ge 10 ] && [ $took -lt 60 ]'
check "the message names the timeout" 'grep -q "timeout_s = 15 s" "$T/hang.log"'

# 3. SIGTERM to the launcher: every rank finishes the step, one checkpoint, "interrupted",
#    exit 143; --resume on 2 ranks ends where an uninterrupted 2-rank run ends, bit for bit.
config ref 30 0
config term 30 0
"$FTHOST" run "$T/ref.toml" --nproc-per-node 2 > "$T/ref.log" 2>&1
check "the uninterrupted run succeeds" '[ $? -eq 0 ]'
"$FTHOST" run "$T/term.toml" --nproc-per-node 2 > "$T/term.log" 2>&1 &
L=$!
wait_lines "$T/term/metrics.jsonl" 5 120
kill -TERM $L
wait $L
rc=$?
check "SIGTERM exits 143 (got $rc)" '[ $rc -eq 143 ]'
check "summary.json says interrupted" 'grep -q "\"status\": \"interrupted\"" "$T/term/summary.json"'
check "a checkpoint was written" 'ls "$T/term/stages/sft/checkpoints" | grep -q "^step-"'
"$FTHOST" run "$T/term.toml" --resume "$T/term" --nproc-per-node 2 > "$T/resume.log" 2>&1
check "--resume on 2 ranks completes" '[ $? -eq 0 ]'
check "the resumed losses are the uninterrupted run's" 'diff <(losses "$T/ref") <(losses "$T/term") > /dev/null'
check "the resumed weights are the uninterrupted run's" \
  'cmp -s "$T/ref/stages/sft/final/model.safetensors" "$T/term/stages/sft/final/model.safetensors"'

# 4. A checkpoint of 2 ranks resumes in one process (the data position is the global one):
#    the run completes with one line per step, none twice.
config other 30 0
"$FTHOST" run "$T/other.toml" --nproc-per-node 2 > "$T/other.log" 2>&1 &
L=$!
wait_lines "$T/other/metrics.jsonl" 5 120
kill -TERM $L
wait $L
"$FTHOST" run "$T/other.toml" --resume "$T/other" > "$T/other-resume.log" 2>&1
check "a 2-rank checkpoint resumes on 1 process" '[ $? -eq 0 ]'
check "one training line per step after resuming on another world size" \
  '[ "$(grep -c "\"loss\"" "$T/other/metrics.jsonl")" -eq 30 ]'
check "the run resumed from its checkpoint, not from step 1" 'grep -q "resumes from" "$T/other-resume.log"'

# 5. A worker restarted by torchrun (TORCHELASTIC_RESTART_COUNT > 0) runs the same command
#    line and resumes its run directory instead of refusing it.
config restart 30 0
"$FTHOST" run "$T/restart.toml" > "$T/restart.log" 2>&1 &
L=$!
wait_lines "$T/restart/metrics.jsonl" 5 120
kill -TERM $L
wait $L
RANK=0 WORLD_SIZE=1 TORCHELASTIC_RESTART_COUNT=1 "$FTHOST" run "$T/restart.toml" > "$T/restart2.log" 2>&1
check "a restarted worker completes its run" '[ $? -eq 0 ]'
check "it says it resumes" 'grep -q "restart 1 of the torchrun job: resuming" "$T/restart2.log"'
check "and continues from the checkpoint" '[ "$(grep -c "\"loss\"" "$T/restart/metrics.jsonl")" -eq 30 ]'

echo "distributed_test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
