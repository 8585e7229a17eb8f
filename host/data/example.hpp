// example.hpp — one dataset row turned into tokens and labels.
//
// Row shapes use TRL's field names:
//   {"text": ...}                              every token is a label
//   {"prompt": ..., "completion": ...}         labels on the completion (+ EOS) only,
//                                              or on every token for FT_LABELS_ALL
//   {"messages": [{"role", "content"}, ...]}   rendered with ChatML; labels on the
//                                              assistant turns (content + <|im_end|>)
#pragma once

#include "data/byte_tokenizer.hpp"

#include <fthost/fthost.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace fthost::host {

struct Example {
    std::vector<int64_t> ids;
    std::vector<int64_t> labels;  // unshifted; -100 where no loss (always at position 0)
    // For generation-based eval: the prompt as tokens, and the expected answer.
    std::vector<int64_t> prompt_ids;
    std::string prompt_text, reference;
    std::string row_json;
    int64_t num_labels() const;
};

// Throws std::runtime_error with a reason when the row has an unknown shape.
Example make_example(const nlohmann::json& row, const ByteTokenizer& tok, ft_label_policy policy, int64_t max_seq_len);

}  // namespace fthost::host
