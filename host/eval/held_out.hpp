// held_out.hpp — what a stage reports about a model on its held-out examples: the
// graders' task metrics (greedy answers), the share of preference pairs it ranks right,
// and for on-policy stages the graders' mean over completions sampled as in training.
#pragma once

#include "config/run_config.hpp"
#include "data/batch_stream.hpp"
#include "data/example.hpp"
#include "distributed/communicator.hpp"
#include "model/model_session.hpp"
#include "tokenizer/text_codec.hpp"

#include <map>
#include <string>
#include <vector>

namespace fthost::host {

// Eval batches in an objective's shape, unshuffled and unpacked, on `device`.
std::vector<HostBatch> eval_batches(const std::vector<Example>& eval, int64_t batch_size, ft_data_shape shape,
                                    at::Device device);

// The graders' task metrics, plus preference_accuracy for pairs and sampled/<grader> for
// on-policy shapes. codec: the model's text codec, or null for a model that reads no
// text (no scores then: its objective's eval loss is the score).
// With the ranks of a distributed run (comm) the work is sharded: every rank gets
// preference_accuracy, only rank 0 the graders' scores.
std::map<std::string, double> held_out_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                              const TextCodec* codec, ft_data_shape shape, at::Device device,
                                              Communicator* comm = nullptr);

// The share of pairs whose chosen completion has a higher summed log-prob than the
// rejected one under `model`.
// With comm, each rank scores its share of the batches and the counts are summed.
double preference_accuracy(ModelSession& model, const std::vector<Example>& eval, int64_t batch_size, at::Device device,
                           Communicator* comm = nullptr);

}  // namespace fthost::host
