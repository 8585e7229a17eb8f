// task_eval.hpp — task metrics: generate an answer for each eval prompt, score it with
// every configured grader plugin, and average (NaN scores are skipped, as TRL skips None).
#pragma once

#include "distributed/communicator.hpp"
#include "tokenizer/text_codec.hpp"
#include "data/example.hpp"
#include "model/model_session.hpp"

#include <map>
#include <string>

namespace fthost::host {

struct TaskEvalResult {
    std::map<std::string, double> scores;  // grader name -> mean score
    int64_t examples = 0;
};

// [stage.eval] group_by: each grader's mean over the items whose row has each value of
// that field, keyed "<field>:<value>/<grader>" (rows without it count only overall).
std::map<std::string, double> means_by_group(const StageConfig& stage, const std::vector<const Example*>& items,
                                             const std::vector<std::vector<double>>& scores);

// With the ranks of a distributed run (comm), each rank generates the answers of its share
// of the prompts and rank 0 grades them all: the other ranks' result has no scores.
TaskEvalResult run_task_eval(ModelSession& model, const std::vector<Example>& eval, const StageConfig& stage,
                             const TextCodec& codec, Communicator* comm = nullptr);

}  // namespace fthost::host
