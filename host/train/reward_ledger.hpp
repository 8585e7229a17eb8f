// reward_ledger.hpp — what an on-policy stage's graders failed to score. Per grader:
// the rewards asked for, the ones lost (no score under on_error = "skip", a 0 under
// "zero"), the calls that failed and the last reason. It lives in the trainer state
// (checkpointed, so a resumed stage keeps counting) and goes to summary.json; a stage
// stops when a grader has lost more than its max_failure_fraction of its rewards.
#pragma once

#include "config/run_config.hpp"
#include "train/rollout.hpp"

#include <nlohmann/json.hpp>

namespace fthost::host {

// Adds rollout `r` (sampled for `step`) to `ledger` ({"<grader>": {"graded", "lost",
// "failed_calls", "last_error"}}), warns on stderr (when `warn`: the rank that reports)
// for each failed call with the counts so far, and throws once a grader's lost share
// passes its max_failure_fraction.
void record_grading(nlohmann::json& ledger, const StageConfig& sc, const Rollout& r, int64_t step, bool warn = true);

}  // namespace fthost::host
