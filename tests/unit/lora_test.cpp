// LoRA against its definition: a fresh adapter changes nothing, merging changes
// nothing, gradients match finite differences; and packing changes no example's loss.
#include "test_support.hpp"

namespace fthost::test {
namespace {

HostBatch sample_batch() {
    static std::vector<Example> ex = {text_example("the quick brown fox"), text_example("jumps over"),
                                      text_example("the lazy dog, twice")};
    return collate({{&ex[0]}, {&ex[1]}, {&ex[2]}});
}

at::Tensor logits_of(ModelSession& m, HostBatch& b) { return m.logits(m.hidden_states(b)); }

TEST(Lora, FreshAdapterReproducesBaseOutput) {
    auto model = tiny_model();
    HostBatch b = sample_batch();
    at::NoGradGuard ng;
    at::Tensor base = logits_of(*model, b);
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 8.0\ntarget_modules = [\"all-linear\"]"));
    at::Tensor adapted = logits_of(*model, b);
    EXPECT_EQ(max_abs_diff(base, adapted), 0.0);
    EXPECT_EQ(model->trainable_parameters().size(), 2u * 7u * 2u);  // A and B x 7 sites x 2 layers
}

TEST(Lora, TargetsOnlyNamedSites) {
    auto model = tiny_model();
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "target_modules = [\"q_proj\", \"v_proj\"]"));
    for (const auto& [name, t] : model->trainable_parameters())
        EXPECT_TRUE(name.find("q_proj") != std::string::npos || name.find("v_proj") != std::string::npos) << name;
    EXPECT_EQ(model->trainable_parameters().size(), 2u * 2u * 2u);
}

TEST(Lora, MergedEqualsUnmerged) {
    auto model = tiny_model();
    HostBatch b = sample_batch();
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 16.0\ntarget_modules = [\"all-linear\"]"));
    at::NoGradGuard ng;
    for (auto& [name, t] : model->trainable_parameters()) t.normal_(0, 0.2);  // B != 0: a trained adapter
    at::Tensor unmerged = logits_of(*model, b);
    at::Tensor base_only;
    model->set_adapters_enabled(false);
    base_only = logits_of(*model, b);
    model->set_adapters_enabled(true);
    ASSERT_GT(max_abs_diff(unmerged, base_only), 1e-3) << "the adapter should change the output";
    model->merge_param();
    at::Tensor merged = logits_of(*model, b);
    EXPECT_LE(max_abs_diff(unmerged, merged), 1e-5);
}

TEST(Lora, RsLoraScalesByRootRank) {
    auto a = tiny_model(), b = tiny_model();
    HostBatch batch = sample_batch();
    a->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 8.0\nuse_rslora = true"));
    // alpha / sqrt(r) = 4 = alpha' / r with alpha' = 16
    b->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 16.0"));
    at::NoGradGuard ng;
    auto ta = a->trainable_parameters(), tb = b->trainable_parameters();
    for (size_t i = 0; i < ta.size(); ++i) {
        ta[i].second.fill_(0.05 * (i + 1));
        tb[i].second.fill_(0.05 * (i + 1));
    }
    EXPECT_LE(max_abs_diff(logits_of(*a, batch), logits_of(*b, batch)), 1e-6);
}

TEST(Lora, GradientsMatchFiniteDifferences) {
    auto model = tiny_model();
    {
        at::NoGradGuard ng;
        for (auto& [_, p] : model->model_parameters()) p.set_data(p.to(at::kDouble));
    }
    model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 2\nlora_alpha = 4.0\ntarget_modules = [\"q_proj\", \"down_proj\"]"));
    auto params = model->trainable_parameters();
    {
        at::NoGradGuard ng;
        for (auto& [_, p] : params) p.normal_(0, 0.3);
    }
    HostBatch b = sample_batch();
    auto loss_fn = [&] {
        ft_batch fb = as_ft_batch(b, b.num_labels);
        return -model->token_logprobs(fb, false).sum() / static_cast<double>(b.num_labels);
    };
    at::Tensor loss = loss_fn();
    loss.backward();
    int checked = 0;
    for (auto& [name, p] : params) {
        ASSERT_EQ(p.scalar_type(), at::kDouble) << name;
        checked += expect_grad_matches_finite_differences(p, loss_fn, {0, p.numel() / 2, p.numel() - 1}, 1e-7, 1e-5, name);
    }
    EXPECT_EQ(checked, 3 * 8);
}

TEST(Packing, PackedRowsGiveTheSameLossPerExample) {
    auto model = tiny_model();
    std::vector<Example> ex = {text_example("alpha beta gamma"), text_example("delta"),
                               text_example("epsilon zeta eta theta iota")};
    at::NoGradGuard ng;
    // Unpacked: one example per row, padded.
    HostBatch unpacked = collate({{&ex[0]}, {&ex[1]}, {&ex[2]}});
    ft_batch fu = as_ft_batch(unpacked, 1);
    at::Tensor lu = model->token_logprobs(fu, false);
    // Packed: all three in one row.
    HostBatch packed = collate({{&ex[0], &ex[1], &ex[2]}});
    ft_batch fp = as_ft_batch(packed, 1);
    at::Tensor lp = model->token_logprobs(fp, false);
    int64_t offset = 0;
    for (size_t i = 0; i < ex.size(); ++i) {
        const int64_t n = static_cast<int64_t>(ex[i].ids.size());
        const double a = lu[i].narrow(0, 0, n).sum().item<double>() / ex[i].num_labels();
        const double b = lp[0].narrow(0, offset, n).sum().item<double>() / ex[i].num_labels();
        EXPECT_NEAR(a, b, 1e-5) << "example " << i;
        offset += n;
    }
    EXPECT_EQ(packed.num_labels, unpacked.num_labels);
}

}  // namespace
}  // namespace fthost::test
