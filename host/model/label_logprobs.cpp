// A model's predictions of its labels: per-label log-probs through the chunked LM head,
// and label logits, each taken from the hidden state the model aligns with the label
// (ft_model_vtable.label_alignment).
#include "model/model_session.hpp"

#include <fthost/torch.hpp>

namespace fthost::host {

std::pair<at::Tensor, at::Tensor> ModelSession::labelled_states(const at::Tensor& hidden, const at::Tensor& labels) const {
    const int64_t T = labels.size(1), H = hidden.size(-1);
    if (hidden.dim() != 3 || hidden.size(0) != labels.size(0) || hidden.size(1) != T)
        throw Error("model plugin '" + model_.plugin + "' returned hidden states of shape " + c10::str(hidden.sizes()) +
                    " for labels of shape " + c10::str(labels.sizes()) + " (they must be [B, T, H] over the labels' T)");
    // FT_LABEL_NEXT: position t-1 predicts label t (a decoder); FT_LABEL_SAME: position t.
    const int64_t shift = traits_.label_alignment == FT_LABEL_NEXT ? 1 : 0;
    const at::Tensor target = labels.narrow(1, shift, T - shift);
    const at::Tensor mask = target.ne(-100);
    return {hidden.narrow(1, 0, T - shift).masked_select(mask.unsqueeze(-1)).view({-1, H}), target.masked_select(mask)};
}

at::Tensor ModelSession::token_logprobs(const ft_batch& batch, bool adapters_off, double temperature) {
    std::optional<at::NoGradGuard> ng;
    if (adapters_off) ng.emplace();
    const at::Tensor hidden = forward_checked(batch, adapters_off);
    const at::Tensor& labels = borrow(batch.labels);
    // Only labelled positions go through the LM head (SFT skips its prompts), a chunk at
    // a time, gather - logsumexp in (at least) fp32.
    const auto [h, target] = labelled_states(hidden, labels);
    const at::Tensor lp = chunked_token_logprobs(head_, h, target, temperature, logprob_chunk_rows(vocab_size()));
    const int64_t shift = traits_.label_alignment == FT_LABEL_NEXT ? 1 : 0;
    const at::Tensor mask = labels.narrow(1, shift, labels.size(1) - shift).ne(-100);
    return at::constant_pad_nd(at::zeros(mask.sizes(), lp.options()).masked_scatter(mask, lp), {shift, 0}, 0.0);
}

at::Tensor ModelSession::label_logits(const ft_batch& batch, bool adapters_off) {
    std::optional<at::NoGradGuard> ng;
    if (adapters_off) ng.emplace();
    const at::Tensor hidden = forward_checked(batch, adapters_off);
    // Row-major over (b, t): the prediction for each label != -100.
    at::Tensor logits = this->logits(labelled_states(hidden, borrow(batch.labels)).first);
    return logits.to(at::promote_types(logits.scalar_type(), at::kFloat));
}

}  // namespace fthost::host
