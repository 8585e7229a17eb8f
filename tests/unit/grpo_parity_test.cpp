// grpo against TRL 0.28's GRPOTrainer._compute_loss: the plugin is loaded through the C
// ABI and given the logits, rewards and stored log-probs that
// tests/fixtures/make_grpo_fixtures.py fed TRL; loss and clip/KL metrics must agree in
// float64 to a relative 1e-6, and the gradient with respect to the logits must match
// finite differences. Covers every loss_type, scale_rewards, GSPO, delta (above and below
// 1 + epsilon_high, where the clip metrics read the capped ratio), temperature, and a
// group of one (G = 1: every advantage 0, the loss the KL term alone).
#include "test_support.hpp"

#include <fthost/torch.hpp>

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

struct GrpoHarness {
    PluginSection section;
    const ft_objective_vtable* vt;
    ft_objective* obj = nullptr;
    HostBatch batch;
    std::vector<std::pair<std::string, at::Tensor>> extras;
    at::Tensor logits, ref_logits, mask;
    int64_t P = 0;
    std::map<std::string, double> metrics;
    ft_run_s run;

    explicit GrpoHarness(const json& c) {
        std::string body;
        for (const auto& [k, v] : c["config"].items()) body += k + " = " + v.dump() + "\n";
        section = plugin(FT_KIND_OBJECTIVE, "grpo", body);
        vt = static_cast<const ft_objective_vtable*>(section.loaded->desc->vtable);
        ft_error err{};
        check(vt->create(host_api(), &section.config, &obj, &err), err);
        P = c["prompt_length"].get<int64_t>();
        const at::Tensor ids = tensor_from_json(c["input_ids"]).to(at::kLong);
        const at::Tensor cm = tensor_from_json(c["completion_mask"]).to(at::kLong);
        const int64_t R = ids.size(0), T = ids.size(1);
        mask = at::constant_pad_nd(cm, {P, 0}, 0).ne(0);  // fthost's layout: label t predicted at t-1
        batch.input_ids = ids;
        batch.labels = at::where(mask, ids, at::full_like(ids, -100));
        batch.position_ids = at::arange(T).repeat({R, 1});
        batch.sequence_ids = at::zeros({R, T}, at::kLong);
        batch.num_labels = mask.sum().item<int64_t>();
        batch.num_examples = R;
        logits = tensor_from_json(c["logits"]).requires_grad_(true);
        if (c.contains("ref_logits")) ref_logits = tensor_from_json(c["ref_logits"]);
        extras = {{"rewards", tensor_from_json(c["rewards"])},
                  {"row_index", at::arange(R)},
                  {"num_generations", at::tensor({c["num_generations"].get<int64_t>()})},
                  {"max_new_tokens", at::tensor({c["max_new_tokens"].get<int64_t>()})},
                  {"sampling_temperature", at::tensor({c["temperature"].get<double>()}, at::kDouble)}};
        if (c.contains("old_logprobs"))
            extras.emplace_back("old_logprobs", at::constant_pad_nd(tensor_from_json(c["old_logprobs"]), {P, 0}, 0.0));
        // The host's token log-probs at temperature tau from the fixture's logits:
        // position t-1 predicts label t, laid out [B, T].
        run.token_logprobs = [this](const ft_batch&, int32_t which, double tau) -> at::Tensor {
            const at::Tensor& src = which == FT_RUN_REFERENCE ? ref_logits : logits;
            const int64_t T = src.size(1);
            const at::Tensor m = mask.narrow(1, 1, T - 1);
            const at::Tensor rows = src.narrow(1, 0, T - 1).masked_select(m.unsqueeze(-1)).view({-1, src.size(2)});
            const at::Tensor targets = batch.labels.narrow(1, 1, T - 1).masked_select(m);
            const at::Tensor picked = at::log_softmax(rows / tau, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
            return at::constant_pad_nd(at::zeros(m.sizes(), picked.options()).masked_scatter(m, picked), {1, 0}, 0.0);
        };
        run.label_logits = [](const ft_batch&, int32_t) -> at::Tensor {
            throw Error("grpo should use token log-probs at the sampling temperature");
        };
        run.metric = [this](const std::string& n, double v) { metrics[n] = v; };
    }
    ~GrpoHarness() {
        if (obj) vt->destroy(obj);
    }
    at::Tensor loss() {
        ft_batch fb = as_ft_batch(batch, batch.num_labels);
        std::vector<ft_named_tensor> named;
        for (auto& [n, t] : extras) named.push_back({n.c_str(), reinterpret_cast<ft_tensor>(&t)});
        fb.extras = named.data();
        fb.extra_count = static_cast<uint32_t>(named.size());
        ft_tensor out = nullptr;
        ft_error err{};
        check(vt->loss(obj, &run, &fb, &out, &err), err);
        return take(out);
    }
};

const json& fixtures() {
    static const json j = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/grpo_trl.json"));
    return j;
}

TEST(GrpoParity, LossAndMetricsEqualTrl) {
    EXPECT_EQ(fixtures()["trl_version"], "0.28.0");
    ASSERT_GE(fixtures()["cases"].size(), 8u);
    for (const auto& c : fixtures()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        GrpoHarness h(c);
        const double got = h.loss().item<double>(), want = c["loss"].get<double>();
        EXPECT_NEAR(got, want, 1e-6 * std::max(1.0, std::abs(want)));
        if (std::abs(want) > 1e-3) EXPECT_LE(std::abs(got - want) / std::abs(want), 1e-6);
        for (const auto& [name, v] : c["metrics"].items()) {
            ASSERT_TRUE(h.metrics.count(name)) << name;
            EXPECT_NEAR(h.metrics[name], v.get<double>(), 1e-9 + 1e-6 * std::abs(v.get<double>())) << name;
        }
    }
}

TEST(GrpoParity, GradientMatchesFiniteDifferences) {
    for (const auto& c : fixtures()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        GrpoHarness h(c);
        h.loss().backward();
        ASSERT_TRUE(h.logits.grad().defined());
        EXPECT_GT(h.logits.grad().abs().sum().item<double>(), 0.0);
        // Logits that predict labelled tokens (the row's P-1th position onwards).
        std::vector<int64_t> idx;
        const int64_t T = h.logits.size(1), V = h.logits.size(2);
        for (int64_t k = 0; k < 24; ++k) idx.push_back(((k % 4) * T + h.P - 1 + (k / 4) % 3) * V + (k * 5) % V);
        expect_grad_matches_finite_differences(h.logits, [&] { return h.loss(); }, idx, 1e-8, 1e-5, c["name"]);
    }
}

}  // namespace
}  // namespace fthost::test
