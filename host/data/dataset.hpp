// dataset.hpp — a stage's training and eval examples, from JSONL files.
#pragma once

#include "config/run_config.hpp"
#include "data/example.hpp"
#include "data/jsonl_reader.hpp"
#include "data/span_corruption.hpp"

namespace fthost::host {

struct Datasets {
    std::vector<Example> train, eval;
    JsonlStats train_stats, eval_stats;
};

// Reads data.train (and data.eval, or holds out data.eval_fraction of train, chosen
// by a seeded shuffle). Relative paths are taken from the working directory. For
// FT_DATA_FEEDBACK each example gets its mismatched KL row: in file order, in chunks of
// `batch_size`, example i is paired with example i-1's completion (the chunk's first
// with its last), as TRL's KTOTrainer builds its KL dataset. With cfg.span_corruption,
// 'text' rows become T5 span-corruption examples (data/span_corruption.hpp), masked from
// `seed` and each row's line (train and eval files apart); the rest load as usual.
Datasets load_datasets(const DataConfig& cfg, const InputReader& reader, ft_label_policy policy, uint64_t seed,
                       ft_data_shape shape = FT_DATA_SEQUENCES, int64_t batch_size = 8);
// Text rows for a model that reads text only.
Datasets load_datasets(const DataConfig& cfg, const TextCodec& codec, ft_label_policy policy, uint64_t seed,
                       ft_data_shape shape = FT_DATA_SEQUENCES, int64_t batch_size = 8);

// span (when given) makes the file's 'text' rows span-corruption examples; `stream`
// tells files apart in their masks' seeds (span_mask_seed).
std::vector<Example> load_examples(const std::string& file, bool skip_malformed, const InputReader& reader,
                                   ft_label_policy policy, int64_t max_seq_len, JsonlStats* stats = nullptr,
                                   ft_data_shape shape = FT_DATA_SEQUENCES, const SpanCorruption* span = nullptr,
                                   uint64_t stream = 0);
std::vector<Example> load_examples(const std::string& file, bool skip_malformed, const TextCodec& codec,
                                   ft_label_policy policy, int64_t max_seq_len, JsonlStats* stats = nullptr,
                                   ft_data_shape shape = FT_DATA_SEQUENCES);

// Gives every example its FT_DATA_FEEDBACK KL row (see load_datasets).
void add_mismatched_rows(std::vector<Example>& examples, int64_t chunk, int64_t max_seq_len);

}  // namespace fthost::host
