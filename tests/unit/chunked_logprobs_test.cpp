// Chunked token log-probs (host/train/chunked_logprobs.cpp): values and gradients — into
// the hidden states and into the head's weight — equal the unchunked
// log_softmax(head(h) / T).gather(y), for any chunk size, temperature and a padded
// vocabulary head; and the model session's token_logprobs equals the plain formula.
#include "test_support.hpp"

#include "model/chunked_logprobs.hpp"

#include <fthost/padded_vocab.hpp>

namespace fthost::test {
namespace {

TEST(ChunkedLogprobs, ValuesAndGradientsEqualTheUnchunkedComputation) {
    at::manual_seed(11);
    const int64_t N = 300, H = 48, V = 1000;
    const at::Tensor w0 = at::randn({V, H}) * 0.2, h0 = at::randn({N, H}), targets = at::randint(0, V, {N});
    const at::Tensor upstream = at::randn({N});
    for (const bool padded : {false, true})
        for (double temperature : {1.0, 0.7})
            for (int64_t chunk : {1, 64, 299, 300, 4096}) {
                at::Tensor w = w0.clone().set_requires_grad(true), h = h0.clone().set_requires_grad(true);
                PaddedVocabHead padded_head;
                const LmHead head = [&](const at::Tensor& x) { return padded ? padded_head.logits(x, w) : at::linear(x, w); };
                const at::Tensor lp = host::chunked_token_logprobs(head, h, targets, temperature, chunk);
                (lp * upstream).sum().backward();

                at::Tensor wr = w0.clone().set_requires_grad(true), hr = h0.clone().set_requires_grad(true);
                const at::Tensor ref =
                    at::log_softmax(at::linear(hr, wr) / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
                (ref * upstream).sum().backward();
                const std::string at_ = "chunk " + std::to_string(chunk) + " T " + std::to_string(temperature) +
                                        (padded ? " padded" : "");
                EXPECT_LT(max_abs_diff(lp, ref), 1e-5) << at_;
                EXPECT_LT(max_abs_diff(h.grad(), hr.grad()), 1e-5) << at_;
                EXPECT_LT(max_abs_diff(w.grad(), wr.grad()), 1e-5) << at_;
            }
}

TEST(ChunkedLogprobs, WithoutGradientsNothingIsRecorded) {
    at::Tensor w = at::randn({50, 8}).set_requires_grad(true);
    const LmHead head = [&](const at::Tensor& x) { return at::linear(x, w); };
    at::NoGradGuard ng;
    const at::Tensor lp = host::chunked_token_logprobs(head, at::randn({10, 8}), at::randint(0, 50, {10}), 1.0, 3);
    EXPECT_FALSE(lp.requires_grad());
    EXPECT_EQ(lp.size(0), 10);
    EXPECT_THROW(host::chunked_token_logprobs(head, at::randn({10, 8}), at::randint(0, 50, {9}), 1.0, 3), Error);
}

TEST(ChunkedLogprobs, ModelTokenLogprobsEqualThePlainFormula) {
    auto model = tiny_model(21);
    std::vector<Example> ex = {text_example("chunked log-probs"), text_example("of every label")};
    HostBatch b = collate({{&ex[0]}, {&ex[1]}});
    ft_batch fb = as_ft_batch(b, b.num_labels);
    for (double temperature : {1.0, 0.5}) {
        const at::Tensor lp = model->token_logprobs(fb, false, temperature);
        const at::Tensor loss = -lp.sum();
        loss.backward();
        std::vector<at::Tensor> grads;
        for (auto& [_, p] : model->model_parameters()) {
            grads.push_back(p.grad().clone());
            p.mutable_grad().zero_();
        }
        // The plain formula over every position.
        const at::Tensor hidden = model->hidden_states(b);
        const int64_t T = b.labels.size(1);
        const at::Tensor target = b.labels.narrow(1, 1, T - 1), mask = target.ne(-100);
        const at::Tensor logp = at::log_softmax(model->logits(hidden.narrow(1, 0, T - 1)) / temperature, -1);
        const at::Tensor ref =
            at::constant_pad_nd(logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1) * mask, {1, 0}, 0.0);
        EXPECT_LT(max_abs_diff(lp, ref), 1e-5) << temperature;
        (-ref.sum()).backward();
        size_t i = 0;
        for (auto& [name, p] : model->model_parameters()) {
            EXPECT_LT(max_abs_diff(p.grad(), grads[i++]), 1e-5) << name << " T " << temperature;
            p.mutable_grad().zero_();
        }
    }
}

}  // namespace
}  // namespace fthost::test
