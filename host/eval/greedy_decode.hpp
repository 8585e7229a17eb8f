// greedy_decode.hpp — batched greedy decoding for eval, without a KV cache (the
// generation engine with a cache and sampling belongs to the RL work). Prompts of
// different lengths share a batch by left padding: padding has sequence id -1 and each
// prompt's positions start at 0 on its first token.
#pragma once

#include "train/model_session.hpp"

#include <vector>

namespace fthost::host {

// Returns the generated token ids for each prompt, stopping at any of stop_ids (not
// included) or after max_new_tokens. Only ids below vocab_limit are ever chosen.
std::vector<std::vector<int64_t>> greedy_decode(ModelSession& model, const std::vector<std::vector<int64_t>>& prompts,
                                                int64_t max_new_tokens, const std::vector<int64_t>& stop_ids,
                                                int64_t vocab_limit, int64_t batch_size);

}  // namespace fthost::host
