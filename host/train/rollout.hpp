// rollout.hpp — one generation batch for on-policy objectives (fthost.h,
// FT_DATA_COMPLETIONS): sample num_generations completions per prompt with the policy,
// grade them with the stage's graders, and lay them out as the accumulation
// micro-batches the objective trains on, with the rewards and (when the batch serves
// several steps) the log-probs at sampling time.
//
// Across ranks each rank samples and grades its own share of the step's prompts (a
// group never leaves its rank), then one collective gives every rank what every
// completion scored: rewards, advantages' statistics and metrics are those of the
// whole generation batch, as one process computes them.
#pragma once

#include "config/run_config.hpp"
#include "data/batch_stream.hpp"
#include "distributed/communicator.hpp"
#include "eval/grading.hpp"
#include "model/model_session.hpp"

#include <map>
#include <string>
#include <vector>

namespace fthost::host {

struct Rollout {
    std::vector<Example> rows;      // this rank's prompt + completion rows; a prompt's completions are consecutive
    std::vector<HostBatch> micro;   // this rank's micro-batches of batch_size rows, on the device
    int64_t first_micro = 0;        // the place of micro[0] among the step's micro-batches of all ranks
    int64_t global_micro = 0;       // the step's micro-batches over all ranks (0: no group kept)
    // Totals of the whole generation batch (every rank's rows).
    int64_t num_items = 0;          // labelled completion tokens
    int64_t num_examples = 0;       // rows trained on
    int64_t num_tokens = 0;         // prompt and completion tokens of those rows
    std::map<std::string, double> metrics;  // reward, rewards/<grader>/mean, completions/*, generation/*
    // Grading over all ranks: completions sampled, each grader's failures, and the
    // completions not trained on because a grader lost a reward in their group
    // (on_error = "skip").
    int64_t graded = 0, dropped = 0;
    std::vector<GraderFailure> failures;  // [grader], as in Grades
};

// `prompts`: this rank's share of the step's prompts (batch_size x grad_accum /
// num_generations on each rank), the ranks' shares in the order of the global stream.
// Completion j of the generation batch samples from (seed, j) whichever rank draws it.
// A prompt whose group has a lost reward is left out whole (its advantages would be
// computed against an unknown reward); when every group is, global_micro is 0.
Rollout make_rollout(ModelSession& model, const std::vector<const Example*>& prompts, const StageConfig& sc,
                     const TextCodec& codec, uint64_t seed, Communicator& comm);

}  // namespace fthost::host
