// chunked_logprobs.hpp — log p(target) under softmax(lm_head(hidden) / temperature),
// computed a chunk of rows at a time so that no [tokens x vocab] tensor is ever held:
// not in the forward pass (each chunk's logits are reduced to one log-prob per row and
// dropped) and not in the backward pass (each chunk's logits are recomputed, with the
// head's graph, and differentiated on their own). At a 128k vocabulary and 8192 tokens
// the unchunked logits alone are 4.2 GB in fp32, and autograd keeps several such
// tensors; chunked, the peak is a few chunks (docs/PERFORMANCE.md, bench/logprobs.sh).
//
// The head is any function of a hidden-state chunk — the model plugin's lm_head
// through the C ABI, padded vocabulary, adapters and all — so the backward pass re-runs
// it with gradients enabled and back-propagates into whatever parameters it uses (the
// head's weight accumulates its gradient directly, as a leaf does in any backward).
// Values and gradients equal the unchunked computation (tests/unit/chunked_logprobs_test.cpp).
#pragma once

#include <ATen/ATen.h>

#include <functional>

namespace fthost::host {

using LmHead = std::function<at::Tensor(const at::Tensor& hidden_chunk)>;

// Rows per chunk so that one chunk's logits hold about kLogitsChunkElements values.
constexpr int64_t kLogitsChunkElements = int64_t{1} << 26;  // 256 MB of fp32 logits
int64_t logprob_chunk_rows(int64_t vocab);

// hidden [N, H], targets [N] (valid ids) -> [N] float32 (or the logits' wider dtype).
// `head` must outlive the backward pass of the result.
at::Tensor chunked_token_logprobs(const LmHead& head, const at::Tensor& hidden, const at::Tensor& targets,
                                  double temperature, int64_t chunk_rows);

}  // namespace fthost::host
