#include "train/reference_model.hpp"

#include "model/autocast.hpp"

#include <fthost/torch.hpp>

namespace fthost::host {

ReferenceModel::ReferenceModel(ModelSession& policy) : policy_(policy) {
    if (policy_.is_full()) copy_ = policy_.frozen_copy();
}

at::Tensor ReferenceModel::compute(const ft_batch& batch, double temperature) {
    at::NoGradGuard ng;
    if (copy_) return copy_->token_logprobs(batch, false, temperature);
    return policy_.token_logprobs(batch, true, temperature);
}

at::Tensor ReferenceModel::label_logits(const ft_batch& batch) {
    if (precomputed_) throw Error("the reference's logits are not kept when its log-probs are precomputed");
    at::NoGradGuard ng;
    if (copy_) return copy_->label_logits(batch);
    return policy_.label_logits(batch, true);
}

std::map<std::string, at::Tensor> ReferenceModel::model_outputs(const ft_batch& batch) {
    if (precomputed_) throw Error("the reference's model outputs are not kept when its log-probs are precomputed");
    at::NoGradGuard ng;
    if (copy_) return copy_->model_outputs(batch);
    return policy_.model_outputs(batch, true);
}

at::Tensor ReferenceModel::token_logprobs(const ft_batch& batch, const HostBatch& hb, double temperature) {
    if (!precomputed_) return compute(batch, temperature);
    if (temperature != 1.0) throw Error("precomputed reference log-probs are at temperature 1");
    const at::Tensor& labels = borrow(batch.labels);
    at::Tensor out = at::zeros(labels.sizes(), at::TensorOptions().dtype(at::kFloat));
    if (hb.examples.size() != static_cast<size_t>(labels.size(0)))
        throw Error("precomputed reference log-probs need one example per row (no packing)");
    for (size_t r = 0; r < hb.examples.size(); ++r) {
        auto it = cache_.find(hb.examples[r]);
        if (it == cache_.end()) throw Error("internal: no precomputed reference log-probs for a batch row");
        out[static_cast<int64_t>(r)].narrow(0, 0, it->second.size(0)).copy_(it->second);
    }
    return out.to(labels.device());
}

void ReferenceModel::precompute(const std::vector<const std::vector<Example>*>& sets, ft_data_shape shape,
                                int64_t batch_size, bool bf16) {
    AutocastScope autocast(policy_.device(), bf16);
    for (const auto* set : sets) {
        for (size_t i = 0; i < set->size(); i += static_cast<size_t>(batch_size)) {
            std::vector<const Example*> examples;
            for (size_t j = i; j < std::min(set->size(), i + static_cast<size_t>(batch_size)); ++j)
                examples.push_back(&(*set)[j]);
            HostBatch hb = to_device(collate_shaped(examples, shape), policy_.device());
            ft_batch fb = as_ft_batch(hb, hb.num_labels);
            const at::Tensor lp = compute(fb).to(at::kCPU, at::kFloat);
            for (size_t r = 0; r < hb.examples.size(); ++r) {
                const int64_t len = static_cast<int64_t>(hb.examples[r]->ids.size());
                cache_[hb.examples[r]] = lp[static_cast<int64_t>(r)].narrow(0, 0, len).clone();
            }
        }
    }
    precomputed_ = true;
    copy_.reset();  // the frozen copy's memory goes back
}

}  // namespace fthost::host
