#include "model/chunked_logprobs.hpp"

#include "model/autocast.hpp"

#include <fthost/plugin.hpp>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace fthost::host {
namespace {

at::Tensor chunk_logprobs(const at::Tensor& logits, const at::Tensor& targets, double temperature) {
    at::Tensor l = logits.to(at::promote_types(logits.scalar_type(), at::kFloat));
    if (temperature != 1.0) l = l / temperature;
    return l.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - at::logsumexp(l, -1);
}

class ChunkedLogprobs : public torch::autograd::Function<ChunkedLogprobs> {
public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& targets,
                              const LmHead* head, double temperature, int64_t chunk_rows) {
        // Grad mode is off here: each chunk's logits are freed once reduced.
        const int64_t n = hidden.size(0);
        std::vector<at::Tensor> parts;
        for (int64_t s = 0; s < n; s += chunk_rows) {
            const int64_t len = std::min(chunk_rows, n - s);
            parts.push_back(chunk_logprobs((*head)(hidden.narrow(0, s, len)), targets.narrow(0, s, len), temperature));
        }
        ctx->save_for_backward({hidden, targets});
        // The head is a host object that outlives every graph built from it (see header).
        ctx->saved_data["head"] = reinterpret_cast<int64_t>(head);
        ctx->saved_data["temperature"] = temperature;
        ctx->saved_data["chunk_rows"] = chunk_rows;
        // Recomputed under the forward's autocast, so the recomputed logits are the same.
        ctx->saved_data["bf16"] = at::autocast::is_autocast_enabled(hidden.device().type()) &&
                                  at::autocast::get_autocast_dtype(hidden.device().type()) == at::kBFloat16;
        return n ? at::cat(parts) : at::zeros({0}, hidden.options().dtype(at::kFloat));
    }

    static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor &hidden = saved[0], &targets = saved[1];
        const auto* head = reinterpret_cast<const LmHead*>(ctx->saved_data["head"].toInt());
        const double temperature = ctx->saved_data["temperature"].toDouble();
        const int64_t chunk_rows = ctx->saved_data["chunk_rows"].toInt();
        const at::Tensor& grad = grads[0];
        at::Tensor grad_hidden = at::zeros_like(hidden);
        at::AutoGradMode enable(true);
        AutocastScope autocast(hidden.device(), ctx->saved_data["bf16"].toBool());
        for (int64_t s = 0; s < hidden.size(0); s += chunk_rows) {
            const int64_t len = std::min(chunk_rows, hidden.size(0) - s);
            // Recompute this chunk with the head's graph and differentiate it alone: the
            // head's parameters accumulate their gradient, the chunk's input gives ours.
            at::Tensor h = hidden.narrow(0, s, len).detach().requires_grad_(true);
            at::Tensor lp = chunk_logprobs((*head)(h), targets.narrow(0, s, len), temperature);
            torch::autograd::backward({lp}, {grad.narrow(0, s, len).to(lp.scalar_type())});
            grad_hidden.narrow(0, s, len).copy_(h.grad());
        }
        return {grad_hidden, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

}  // namespace

int64_t logprob_chunk_rows(int64_t vocab) { return std::max<int64_t>(1, kLogitsChunkElements / std::max<int64_t>(1, vocab)); }

at::Tensor chunked_token_logprobs(const LmHead& head, const at::Tensor& hidden, const at::Tensor& targets,
                                  double temperature, int64_t chunk_rows) {
    if (hidden.dim() != 2 || targets.dim() != 1 || hidden.size(0) != targets.size(0))
        throw Error("chunked_token_logprobs: hidden [N, H] and targets [N] expected");
    if (chunk_rows < 1) throw Error("chunked_token_logprobs: chunk_rows must be positive");
    if (temperature <= 0) throw Error("chunked_token_logprobs: temperature must be positive");
    // One chunk holds everything: plain autograd through the head keeps the logits for
    // backward instead of recomputing them (the same bound on memory, one GEMM fewer).
    if (hidden.size(0) <= chunk_rows) return chunk_logprobs(head(hidden), targets, temperature);
    return ChunkedLogprobs::apply(hidden, targets, &head, temperature, chunk_rows);
}

}  // namespace fthost::host
