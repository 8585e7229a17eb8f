// reference_model.hpp — the frozen starting point that preference objectives compare
// the policy with (ft_host_api's FT_RUN_REFERENCE).
//
// Three ways to get it, cheapest first:
//  - adapter stages (lora, ...): the policy itself with its adapters switched off — no
//    second copy of the weights;
//  - full fine-tuning: a frozen copy of the weights the stage starts from;
//  - precomputed: every training and eval sequence's reference log-probs computed in
//    one pass before the first step ([stage.train] precompute_ref_log_probs), after
//    which the frozen copy is freed.
// The reference never changes during the stage.
#pragma once

#include "model/model_session.hpp"

#include <map>
#include <memory>
#include <vector>

namespace fthost::host {

class ReferenceModel {
public:
    // Must be created before the first optimizer step (the copy is of the start weights).
    explicit ReferenceModel(ModelSession& policy);

    // Per-token reference log-probs of `batch` (rows of `host_batch`), no gradients.
    at::Tensor token_logprobs(const ft_batch& batch, const HostBatch& host_batch, double temperature = 1.0);

    // Next-token logits of the reference at the labelled positions ([N, V], no
    // gradients); not available once log-probs were precomputed.
    at::Tensor label_logits(const ft_batch& batch);

    // The reference's named model outputs (no gradients); not available once log-probs
    // were precomputed.
    std::map<std::string, at::Tensor> model_outputs(const ft_batch& batch);

    // Computes every row of every example in `sets` once, then answers from the cache
    // and frees the frozen copy. Batches are unpacked (one example per row).
    // bf16: under the autocast the policy's forwards use ([run] precision), so that the
    // policy equals its reference at the first step as when the reference runs in the loss.
    void precompute(const std::vector<const std::vector<Example>*>& sets, ft_data_shape shape, int64_t batch_size,
                    bool bf16);

    bool uses_copy() const { return copy_ != nullptr; }
    // How the reference is had: "precomputed" (the copy freed), "frozen_copy" or
    // "adapters_off" — recorded in the stage's summary.
    const char* kind() const { return precomputed_ ? "precomputed" : copy_ ? "frozen_copy" : "adapters_off"; }

private:
    at::Tensor compute(const ft_batch& batch, double temperature = 1.0);
    ModelSession& policy_;
    std::unique_ptr<ModelSession> copy_;
    bool precomputed_ = false;
    std::map<const Example*, at::Tensor> cache_;  // example -> its row's log-probs [len]
};

}  // namespace fthost::host
