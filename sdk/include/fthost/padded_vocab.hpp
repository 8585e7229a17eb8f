// padded_vocab.hpp — the LM head over a vocabulary padded to a multiple of 64.
//
// A GEMM whose output dimension is the vocabulary size (Qwen2's 151,936 rows are padded
// already; Llama 3's 128,256 are; SmolLM's 49,152 are; many fine-tuned vocabularies with
// added tokens are not) runs on tensor cores in tiles of 64/128: an odd size falls off the
// fast path (Netflix measured the LM head 3x slower without padding). The padding lives
// only here, inside the model:
//   - the weight stays the registered [V, H] parameter the host saves, loads and
//     optimises; it is a view of a zero-padded [Vp, H] buffer, so the padding costs
//     Vp - V rows and no copy;
//   - the GEMMs (forward, and both backward GEMMs) run at Vp;
//   - logits() returns [..., V]: padded columns never reach a loss, a user or sampling.
// When the host moves or converts the parameter (set_data), the alias is rebuilt on the
// next call. V already a multiple of 64: a plain linear.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace fthost {

constexpr int64_t kVocabPadMultiple = 64;

inline int64_t padded_vocab_size(int64_t vocab) {
    return (vocab + kVocabPadMultiple - 1) / kVocabPadMultiple * kVocabPadMultiple;
}

class PaddedVocabHead {
public:
    // weight: the model's [V, H] head (or tied embedding) parameter. A head kept in a
    // narrower dtype than `hidden` (a frozen bf16 base) computes in its own dtype, as
    // ops::linear does; the logits come back in hidden's.
    at::Tensor logits(const at::Tensor& hidden, at::Tensor& weight) {
        if (hidden.scalar_type() != weight.scalar_type() && !at::autocast::is_autocast_enabled(hidden.device().type()))
            return logits(hidden.to(weight.scalar_type()), weight).to(hidden.scalar_type());
        const int64_t vocab = weight.size(0), padded = padded_vocab_size(vocab);
        if (padded == vocab) return at::linear(hidden, weight);
        if (!buffer_.defined() || !weight.is_alias_of(buffer_) || buffer_.size(0) != padded) {
            at::NoGradGuard no_grad;
            at::Tensor buffer = at::zeros({padded, weight.size(1)}, weight.options().requires_grad(false));
            buffer.narrow(0, 0, vocab).copy_(weight);
            weight.set_data(buffer.narrow(0, 0, vocab));
            buffer_ = buffer;
        }
        return PaddedHeadFunction::apply(hidden, weight, buffer_).narrow(-1, 0, vocab);
    }

private:
    // hidden [..., H] x buffer [Vp, H]^T -> [..., Vp]; the gradient reaches `weight` (the
    // first V rows of the buffer, and what autograd tracks).
    class PaddedHeadFunction : public torch::autograd::Function<PaddedHeadFunction> {
    public:
        static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                                  const at::Tensor& buffer) {
            ctx->save_for_backward({hidden, buffer});
            ctx->saved_data["vocab"] = weight.size(0);
            return at::linear(hidden, buffer);
        }
        static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                     torch::autograd::tensor_list grads) {
            const auto saved = ctx->get_saved_variables();
            const at::Tensor &hidden = saved[0], &buffer = saved[1];
            const int64_t vocab = ctx->saved_data["vocab"].toInt();
            const at::Tensor g = grads[0];  // [..., Vp]; zero in the padded columns (they are cut off)
            // In the gradient's dtype (bf16 when the forward ran under autocast), each
            // result back in its input's dtype.
            const auto dt = g.scalar_type();
            at::Tensor grad_hidden, grad_weight;
            if (ctx->needs_input_grad(0)) grad_hidden = at::matmul(g, buffer.to(dt)).to(hidden.scalar_type());
            if (ctx->needs_input_grad(1)) {  // not for a frozen head (LoRA, QLoRA): no [V, H] GEMM
                const at::Tensor g2 = g.reshape({-1, g.size(-1)}), h2 = hidden.reshape({-1, hidden.size(-1)}).to(dt);
                grad_weight = at::mm(g2.t(), h2).narrow(0, 0, vocab).to(buffer.scalar_type());
            }
            return {grad_hidden, grad_weight, at::Tensor()};
        }
    };

    at::Tensor buffer_;
};

}  // namespace fthost
