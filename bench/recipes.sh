#!/usr/bin/env bash
# Runs the preference, distillation and RL recipes as written (configs/dpo.toml, kto,
# orpo, simpo, distill, grpo, rft) after the quickstart they continue, and prints per stage: steps,
# seconds, tokens/s and the held-out metrics before -> after (exact match, preference
# accuracy) plus the teacher's exact match for distillation. Also runs DPO, KTO and
# SimPO without their NLL/strength settings to show what those settings buy.
# Usage: bash bench/recipes.sh [BUILD_DIR]    (results go in docs/OBJECTIVES.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SFT="$OUT/quickstart/stages/finetune/final"
PRE="$OUT/quickstart/stages/pretrain/final"

bench_header
"$BUILD/fthost" run configs/quickstart.toml --set "run.output_dir=$OUT/quickstart" >/dev/null 2>&1

run() {  # run LABEL RECIPE STAGE [--set ...]
  local label="$1" recipe="$2" stage="$3"
  shift 3
  "$BUILD/fthost" run "configs/$recipe" --set "run.output_dir=$OUT/$label" "$@" >/dev/null 2>"$OUT/$label.log"
  python3 - "$OUT/$label/summary.json" "$label" "$stage" <<'PY'
import json, sys
summary, label, stage = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
st = next(s for s in summary["stages"] if s["name"] == stage)
def pair(key):
    b, a = st["base_eval"].get(key), st["eval"].get(key)
    return "-" if a is None else (f"{b:.3f} -> {a:.3f}" if b is not None else f"{a:.3f}")
teacher = st.get("teacher_eval", {}).get("exact_match")
extra = "" if teacher is None else f"teacher {teacher:.3f}"
for key in ("sampled/exact_match", "program", "sampled/program"):
    if key in st["eval"]:
        extra += f"  {key} {pair(key)}"
print(f"{label:<16} {st['steps']:>5} {st['seconds']:>7.1f} {st['tokens_per_s']:>8.0f}  "
      f"{pair('exact_match'):<16} {pair('preference_accuracy'):<16} {extra}")
PY
}

printf "%-16s %5s %7s %8s  %-16s %-16s %s\n" recipe steps s tok/s "exact_match" "pref_accuracy" "other"
run dpo dpo.toml dpo --set "stage.dpo.init_from=\"$SFT\""
run dpo_no_rpo dpo.toml dpo --set "stage.dpo.init_from=\"$SFT\"" --set stage.dpo.objective.rpo_alpha=0.0
run kto kto.toml kto --set "stage.kto.init_from=\"$SFT\""
run kto_beta0.1 kto.toml kto --set "stage.kto.init_from=\"$SFT\"" --set stage.kto.objective.beta=0.1 --set stage.kto.train.lr=1e-3
run simpo simpo.toml simpo --set "stage.simpo.init_from=\"$SFT\""
run simpo_pure simpo.toml simpo --set "stage.simpo.init_from=\"$SFT\"" --set stage.simpo.objective.cpo_alpha=0.0
run orpo orpo.toml orpo --set "stage.orpo.init_from=\"$PRE\""
run distill distill.toml distill --set "stage.distill.teacher=\"$SFT\""
run grpo grpo.toml grpo --set "stage.grpo.init_from=\"$SFT\""
run rft rft.toml rft --set "stage.rft.init_from=\"$SFT\""
