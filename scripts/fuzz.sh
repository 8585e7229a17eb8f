#!/usr/bin/env bash
# libFuzzer targets of tests/fuzz (docs/TESTING.md): builds them in the sanitizer build
# (scripts/sanitize.sh --build-only configures it when needed) and runs each for a set
# time under nice -n 19. New corpus entries go to a work folder, never to the committed
# seeds in tests/fuzz/corpus/<target>; crashes, leaks, timeouts and out-of-memory inputs
# go to <work>/<target>/crashes/.
#
#   bash scripts/fuzz.sh                      # every target, 60 s each
#   bash scripts/fuzz.sh 1800 jsonl safetensors
#   FTHOST_FUZZ_PARALLEL=2 bash scripts/fuzz.sh 1800     # two targets at a time
#   FTHOST_FUZZ_KEEP_GOING=1 ...              # keep fuzzing after a crash (libFuzzer -fork=1)
#   bash scripts/fuzz.sh --replay             # run every committed seed once (a quick regression check)
# Env: FTHOST_ASAN_DIR (build-asan), FTHOST_FUZZ_WORK (<build>/fuzz-work), FTHOST_FUZZ_NOBUILD=1.
# Exit status 1 when any target found something.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${FTHOST_ASAN_DIR:-$ROOT/build-asan}"
WORK="${FTHOST_FUZZ_WORK:-$BUILD/fuzz-work}"
LOCK="${FTHOST_BUILD_LOCK:-/tmp/fthost-build.lock}"
PARALLEL="${FTHOST_FUZZ_PARALLEL:-1}"
ALL=(run_config jsonl safetensors tokenizer_json chat_template program_grader program_output plugin_desc)

REPLAY=0
if [ "${1:-}" = "--replay" ]; then REPLAY=1; shift; fi
SECONDS_EACH=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then SECONDS_EACH="$1"; shift; fi
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")

# The sanitizer options of the test suite (suppressions included).
source "$ROOT/scripts/sanitize.sh" --env
# libFuzzer reports leaks itself (-detect_leaks=1); a crash should not also dump core.
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_stack_use_after_return=0:handle_abort=1:disable_coredump=1"

if [ "${FTHOST_FUZZ_NOBUILD:-0}" != "1" ]; then
  if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    echo "[fuzz] configuring $BUILD through scripts/sanitize.sh --build-only"
    FTHOST_ASAN_DIR="$BUILD" bash "$ROOT/scripts/sanitize.sh" --build-only
  fi
  echo "[fuzz] building the fuzz targets in $BUILD (under $LOCK)"
  flock "$LOCK" nice -n 10 cmake --build "$BUILD" -j "${FTHOST_JOBS:-2}" --target fuzz_targets
fi

dict_of() {
  case "$1" in
    run_config) echo toml ;; jsonl|program_grader|program_output) echo json ;; safetensors) echo safetensors ;;
    tokenizer_json) echo tokenizer ;; chat_template) echo chat ;; *) echo "" ;;
  esac
}

run_one() {
  local t="$1" bin="$BUILD/fuzz/fuzz_$1" dir="$WORK/$1"
  mkdir -p "$dir/corpus" "$dir/crashes"
  local args=(-artifact_prefix="$dir/crashes/" -print_final_stats=1 -timeout=30 -rss_limit_mb=4096)
  local d; d="$(dict_of "$t")"
  [ -n "$d" ] && args+=(-dict="$ROOT/tests/fuzz/dict/$d.dict")
  if ((REPLAY)); then
    # Every committed seed once; a seed that crashes is reported like a new finding.
    (cd "$ROOT" && nice -n 19 "$bin" "${args[@]}" -runs=0 "$ROOT/tests/fuzz/corpus/$t") >"$dir/replay.log" 2>&1
    return $?
  fi
  [ "${FTHOST_FUZZ_KEEP_GOING:-0}" = "1" ] && args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  # The first folder receives new inputs; the committed seeds are only read.
  (cd "$ROOT" && nice -n 19 "$bin" "${args[@]}" -max_total_time="$SECONDS_EACH" \
     "$dir/corpus" "$ROOT/tests/fuzz/corpus/$t") >"$dir/fuzz.log" 2>&1
}

summary() {
  local t="$1" dir="$WORK/$1" log="$WORK/$1/fuzz.log"
  ((REPLAY)) && log="$dir/replay.log"
  local execs rate cov crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | awk '{print $2}' || true)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || true)
  crashes=$(find "$dir/crashes" -type f | wc -l)
  printf "%-16s execs %-10s exec/s %-7s %-24s crashes %s\n" "$t" "${execs:-?}" "${rate:-?}" "${cov:-}" "$crashes"
}

echo "[fuzz] $( ((REPLAY)) && echo "replaying the committed seeds" || echo "${SECONDS_EACH} s per target, $PARALLEL at a time"); work: $WORK"
failed=0
declare -A pids=()
for t in "${TARGETS[@]}"; do
  [ -x "$BUILD/fuzz/fuzz_$t" ] || { echo "[fuzz] no target fuzz_$t in $BUILD/fuzz" >&2; exit 2; }
  while (( $(jobs -rp | wc -l) >= PARALLEL )); do wait -n || true; done
  run_one "$t" &
  pids[$t]=$!
done
for t in "${TARGETS[@]}"; do
  if ! wait "${pids[$t]}"; then
    failed=1
    echo "[fuzz] $t: FOUND SOMETHING, see $WORK/$t/ (crashes/ and the log's last lines):"
    grep -E "ERROR: |==fthost-fuzz==|SUMMARY:|runtime error" "$WORK/$t/$( ((REPLAY)) && echo replay || echo fuzz).log" | head -5 | sed 's/^/    /'
  fi
done
for t in "${TARGETS[@]}"; do summary "$t"; done
exit $failed
