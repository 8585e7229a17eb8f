#!/usr/bin/env bash
# The spread across run seeds of what the recipe test (tests/integration/recipes_test.cpp)
# asserts, so that its bars sit below the worst seed rather than at one seed's result:
# for each seed the quickstart's held-out exact match, then DPO (preference accuracy and
# reward margin before -> after, exact match before -> after), distillation (student
# and teacher exact match) and GRPO (sampled and greedy exact match before -> after),
# each continuing that seed's quickstart.
# Usage: bash bench/recipe_seeds.sh [BUILD_DIR] [SEED...]   (default seeds: 1234 7 99 2024 5)
#        (results go in docs/TESTING.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
shift $(( $# > 0 ? 1 : 0 ))
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1234 7 99 2024 5)

bench_header
printf "%-6s %-10s %-26s %-16s %-18s %-16s %s\n" seed quickstart "dpo pref (margin)" "dpo exact" "distill st/teacher" \
  "grpo sampled" "grpo greedy"
for seed in "${SEEDS[@]}"; do
  q="$OUT/q$seed"
  "$BUILD/fthost" run configs/quickstart.toml --set "run.output_dir=$q" --set "run.seed=$seed" >/dev/null 2>&1
  sft="$q/stages/finetune/final"
  for recipe in dpo distill grpo; do
    key=init_from
    [ $recipe = distill ] && key=teacher
    "$BUILD/fthost" run "configs/$recipe.toml" --set "run.output_dir=$OUT/$recipe$seed" --set "run.seed=$seed" \
      --set "stage.$recipe.$key=\"$sft\"" >/dev/null 2>&1
  done
  python3 - "$OUT" "$seed" <<'PY'
import json, sys
out, seed = sys.argv[1], sys.argv[2]
def stage(run, name):
    return next(s for s in json.load(open(f"{out}/{run}/summary.json"))["stages"] if s["name"] == name)
q, d, t, g = stage(f"q{seed}", "finetune"), stage(f"dpo{seed}", "dpo"), stage(f"distill{seed}", "distill"), stage(f"grpo{seed}", "grpo")
pair = lambda s, k: f"{s['base_eval'][k]:.3f}->{s['eval'][k]:.3f}"
print(f"{seed:<6} {q['eval']['exact_match']:<10.3f} {pair(d, 'preference_accuracy')} ({d['eval']['rewards/margins']:.2f})"
      f"{'':<3} {pair(d, 'exact_match'):<16} {t['eval']['exact_match']:.3f}/{t['teacher_eval']['exact_match']:.3f}"
      f"{'':<7} {pair(g, 'sampled/exact_match'):<16} {pair(g, 'exact_match')}")
PY
done
