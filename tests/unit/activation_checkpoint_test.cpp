// Activation checkpointing (<fthost/activation_checkpoint.hpp>, the decoder's layers):
// the loss and every gradient equal the un-checkpointed pass — for full training and for
// LoRA over a frozen base with adapter dropout (the recomputation replays the dropout
// masks) — and the random streams continue as if each layer had run once.
#include "op_counter.hpp"
#include "test_support.hpp"

namespace fthost::test {
namespace {

struct Pass {
    double loss;
    std::vector<at::Tensor> grads;
    at::Tensor next_random;
    int64_t forward_attention = 0, backward_attention = 0;  // attention calls in each half
};

Pass run_pass(const std::string& param, bool checkpointing) {
    auto model = tiny_model(31);
    model->apply_param(plugin(FT_KIND_PARAM, param, param == "lora" ? "r = 4\nlora_dropout = 0.2\ntarget_modules = [\"all-linear\"]\n" : ""));
    if (param == "lora") {  // B = 0 at init: give the adapters an effect on the output
        at::NoGradGuard ng;
        for (auto& [name, t] : model->trainable_parameters()) t.normal_(0, 0.1);
    }
    model->set_activation_checkpointing(checkpointing);
    model->set_training(true);
    std::vector<Example> ex = {text_example("checkpointed layers"), text_example("replay their dropout")};
    HostBatch b = collate({{&ex[0]}, {&ex[1]}});
    ft_batch fb = as_ft_batch(b, b.num_labels);
    at::manual_seed(77);
    OpCounter attention("aten::scaled_dot_product_attention");  // one call per layer and forward
    const at::Tensor loss = -model->token_logprobs(fb, false).sum() / static_cast<double>(b.num_labels);
    const int64_t forward = attention.calls();
    attention.reset();
    loss.backward();
    Pass p{loss.item<double>(), {}, at::rand({4}), forward, attention.calls()};
    for (auto& [name, t] : model->trainable_parameters()) p.grads.push_back(t.grad().defined() ? t.grad().clone() : at::Tensor());
    return p;
}

TEST(ActivationCheckpointing, LossAndGradientsEqualTheUncheckpointedPass) {
    for (const std::string param : {"full", "lora"}) {
        const Pass plain = run_pass(param, false), ckpt = run_pass(param, true);
        EXPECT_DOUBLE_EQ(plain.loss, ckpt.loss) << param;
        ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
        for (size_t i = 0; i < plain.grads.size(); ++i) {
            ASSERT_TRUE(plain.grads[i].defined() && ckpt.grads[i].defined()) << param << " parameter " << i;
            EXPECT_GT(plain.grads[i].abs().max().item<double>(), 0.0) << param << " parameter " << i;
            EXPECT_LT(max_abs_diff(plain.grads[i], ckpt.grads[i]), 1e-6) << param << " parameter " << i;
        }
        // The generator is where the un-checkpointed pass left it.
        EXPECT_TRUE(plain.next_random.equal(ckpt.next_random)) << param;
        // And the layers did run again: each of the 2 layers once more during backward.
        EXPECT_EQ(plain.forward_attention, 2) << param;
        EXPECT_EQ(ckpt.forward_attention, 2) << param;
        EXPECT_EQ(plain.backward_attention, 0) << param;
        EXPECT_EQ(ckpt.backward_attention, 2) << param;
    }
}

}  // namespace
}  // namespace fthost::test
