// dataset.hpp — a stage's training and eval examples, from JSONL files.
#pragma once

#include "config/run_config.hpp"
#include "data/example.hpp"
#include "data/jsonl_reader.hpp"

namespace fthost::host {

struct Datasets {
    std::vector<Example> train, eval;
    JsonlStats train_stats, eval_stats;
};

// Reads data.train (and data.eval, or holds out data.eval_fraction of train, chosen
// by a seeded shuffle). Relative paths are taken from the working directory.
Datasets load_datasets(const DataConfig& cfg, const ByteTokenizer& tok, ft_label_policy policy, uint64_t seed);

std::vector<Example> load_examples(const std::string& file, bool skip_malformed, const ByteTokenizer& tok,
                                   ft_label_policy policy, int64_t max_seq_len, JsonlStats* stats = nullptr);

}  // namespace fthost::host
