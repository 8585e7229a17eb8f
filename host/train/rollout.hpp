// rollout.hpp — one generation batch for on-policy objectives (fthost.h,
// FT_DATA_COMPLETIONS): sample num_generations completions per prompt with the policy,
// grade them with the stage's graders, and lay them out as the accumulation
// micro-batches the objective trains on, with the rewards and (when the batch serves
// several steps) the log-probs at sampling time.
#pragma once

#include "config/run_config.hpp"
#include "eval/grading.hpp"
#include "data/batch_stream.hpp"
#include "model/model_session.hpp"

#include <map>
#include <string>
#include <vector>

namespace fthost::host {

struct Rollout {
    std::vector<Example> rows;      // prompt + completion; a prompt's completions are consecutive
    std::vector<HostBatch> micro;   // grad_accum micro-batches of batch_size rows, on the device
    int64_t num_items = 0;          // labelled completion tokens in the whole batch
    std::map<std::string, double> metrics;  // reward, rewards/<grader>/mean, completions/*, generation/*
    // Grading: completions sampled, each grader's failures, and the completions not
    // trained on because a grader lost a reward in their group (on_error = "skip").
    int64_t graded = 0, dropped = 0;
    std::vector<GraderFailure> failures;  // [grader], as in Grades
};

// `prompts` holds batch_size x grad_accum / num_generations prompt examples. A prompt
// whose group has a lost reward is left out whole (its advantages would be computed
// against an unknown reward); when every group is, `micro` is empty.
Rollout make_rollout(ModelSession& model, const std::vector<const Example*>& prompts, const StageConfig& sc,
                     const TextCodec& codec, uint64_t seed);

}  // namespace fthost::host
