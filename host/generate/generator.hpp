// generator.hpp — batched autoregressive generation for any model plugin: prompts of
// different lengths left-padded into one batch with their model fields, a KV cache when
// the model has one (else the prefix is recomputed each step, which gives the same
// tokens) sized once for the whole generation and prefilled once per distinct prompt,
// decode steps replayed from a CUDA graph on a GPU, greedy or sampled tokens
// (temperature, top-k, top-p, seed), and stops at stop tokens (EOS), stop strings or
// max_new_tokens. Used by eval (greedy), `fthost generate` and RL stages.
#pragma once

#include "tokenizer/text_codec.hpp"
#include "model/model_session.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fthost::host {

struct SamplingOptions {
    int64_t max_new_tokens = 64;
    double temperature = 0.0;  // 0: greedy (argmax)
    int64_t top_k = 0;         // keep the k most likely tokens; 0: off
    double top_p = 1.0;        // keep the smallest set with this much probability; 1: off
    // Sampling is on the CPU, the same on every device. Prompt i draws from its own
    // generator, seeded from (seed, first_row + i): its tokens do not depend on the batch
    // it shares, the batch size or the other prompts.
    uint64_t seed = 0;
    // prompts[0]'s place among all the prompts drawn from `seed` — a rank's share of a
    // generation batch starts where the ranks before it end, so N ranks sample what one
    // process samples.
    int64_t first_row = 0;
    std::optional<std::vector<int64_t>> stop_ids;  // unset: the codec's stop_ids() (EOS, end of turn)
    std::vector<std::string> stop_strings;  // generation stops once the text contains one
    // Sample only ids below this (a tokenizer inside a larger embedding); 0: the codec's
    // sample_limit() (the byte tokenizer's padding id is never sampled).
    int64_t vocab_limit = 0;
    bool use_cache = true;    // false: recompute the prefix every step (the reference for tests)
    // On a CUDA device, with a model whose cache has a fixed size (ABI 1.5): record one
    // decode step in a CUDA graph and replay it for the next tokens (decode_graph.hpp).
    bool cuda_graphs = true;
    // With a KV cache, rows with the same prompt and fields (the samples of one GRPO
    // group) share one prefill; false: each is prefilled on its own (the reference for tests).
    bool share_prefill = true;
};

struct Generation {
    std::vector<int64_t> tokens;  // generated ids, including the stop token that ended them
    std::string text;             // decoded (special tokens dropped), cut before a stop string
    std::string finish_reason;    // "stop" (a stop token or string) or "length"
};

struct GenerationStats {
    int64_t tokens = 0;    // generated tokens
    double seconds = 0.0;  // wall time of generation
    int64_t graph_replays = 0;  // decode steps replayed from a CUDA graph
    int64_t prefill_rows = 0;   // prompt rows the model prefilled (fewer than prompts when shared)
};

// `fields` (empty, or one per prompt): each prompt's model inputs besides its tokens
// (a vision-language model's pixel_values), given to the prefill — and to every step
// of a model without a KV cache, which recomputes its prefix.
std::vector<Generation> generate(ModelSession& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const SamplingOptions& options, int64_t batch_size, const TextCodec& codec,
                                 GenerationStats* stats = nullptr,
                                 const std::vector<const std::vector<Field>*>& fields = {});

// The generator prompt `row` (counted from first_row) samples from.
at::Generator row_generator(const SamplingOptions& options, int64_t row);

// Applies temperature, top-k and top-p to logits [B, V] and picks one id per row
// (argmax when temperature is 0), row b drawing from gens[b]. Exposed for tests.
at::Tensor pick_next_tokens(const at::Tensor& logits, const SamplingOptions& options, std::vector<at::Generator>& gens);

}  // namespace fthost::host
