// lora and dora against PEFT 0.21: one linear layer with a bias, adapted through the
// param plugins' C ABI, with the weights, input and output gradient that
// tests/fixtures/make_adapter_fixtures.py gave PEFT. Output, gradients (A, B, DoRA's
// magnitude, the input), the magnitude's initial value, the merged weight and the saved
// tensor names must match (float32, relative 1e-5).
#include "test_support.hpp"

#include <fthost/torch.hpp>

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

at::Tensor f32(const json& j) { return tensor_from_json(j, at::kFloat); }

// A model that is one linear site with a bias: forward applies it to the "x" input.
class OneLinear : public fthost::ModelBase {
public:
    OneLinear(const fthost::Host&, const fthost::Config&) : site_(&register_linear("proj", 6, 5, true, at::kFloat)) {}
    at::Tensor forward(const fthost::BatchView& b) { return (*site_)(b.extra("x")); }
    at::Tensor lm_head(const at::Tensor& h) { return h; }
    int64_t vocab_size() const { return 5; }
    fthost::LinearSite& site() { return *site_; }

private:
    fthost::LinearSite* site_;
};

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    const double err = (got - want).abs().max().item<double>(), scale = std::max(1.0, want.abs().max().item<double>());
    EXPECT_LE(err / scale, 1e-5) << what << ": max error " << err;
}

TEST(AdapterParity, LoraAndDoraEqualPeft) {
    const json all = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/adapters_peft.json"));
    ASSERT_EQ(all["cases"].size(), 2u);
    for (const auto& c : all["cases"]) {
        const bool dora = c["use_dora"].get<bool>();
        SCOPED_TRACE(dora ? "dora" : "lora");
        const auto& mvt = fthost::detail::ModelThunks<OneLinear>::vtable;
        Section empty;
        ft_model* m = nullptr;
        ft_error err{};
        check(mvt.create(host_api(), &empty, &m, &err), err);
        auto& model = *reinterpret_cast<OneLinear*>(m);
        {
            at::NoGradGuard ng;
            model.site().weight.copy_(f32(c["weight"]));
            model.site().bias.copy_(f32(c["bias"]));
        }
        PluginSection ps = plugin(FT_KIND_PARAM, dora ? "dora" : "lora",
                                  "r = " + std::to_string(c["r"].get<int>()) + "\nlora_alpha = " +
                                      std::to_string(c["lora_alpha"].get<double>()) + "\ntarget_modules = [\"proj\"]\n");
        const auto* pvt = static_cast<const ft_param_vtable*>(ps.loaded->desc->vtable);
        ft_param* p = nullptr;
        check(pvt->create(host_api(), &ps.config, &mvt, m, &p, &err), err);
        std::map<std::string, at::Tensor> params;
        check(pvt->trainable_parameters(
                  p, [](void* u, const char* n, ft_tensor t) { (*static_cast<std::map<std::string, at::Tensor>*>(u))[n] = borrow(t); },
                  &params, &err),
              err);
        std::vector<std::string> names;
        for (const auto& [n, _] : params) names.push_back(n);
        EXPECT_EQ(names, c["saved_names"].get<std::vector<std::string>>());
        const std::string pre = "base_model.model.proj.";
        if (dora) expect_close(params[pre + "lora_magnitude_vector"], f32(c["initial_magnitude"]), "initial magnitude");
        {
            at::NoGradGuard ng;
            params[pre + "lora_A.weight"].copy_(f32(c["lora_A"]));
            params[pre + "lora_B.weight"].copy_(f32(c["lora_B"]));
            if (dora) params[pre + "lora_magnitude_vector"].copy_(f32(c["magnitude"]));
        }
        at::Tensor x = f32(c["x"]).requires_grad_(true);
        HostBatch hb;
        hb.input_ids = hb.labels = hb.position_ids = hb.sequence_ids = at::zeros({1, 1}, at::kLong);
        hb.extras = {{"x", x}};
        ft_batch fb = as_ft_batch(hb, 1);
        ft_model_output out{sizeof(ft_model_output), nullptr};
        check(mvt.forward(m, &fb, &out, &err), err);
        at::Tensor y = take(out.hidden_states);
        expect_close(y.detach(), f32(c["y"]), "output");
        (y * f32(c["grad_out"])).sum().backward();
        expect_close(params[pre + "lora_A.weight"].grad(), f32(c["grad_A"]), "grad A");
        expect_close(params[pre + "lora_B.weight"].grad(), f32(c["grad_B"]), "grad B");
        expect_close(x.grad(), f32(c["grad_x"]), "grad x");
        if (dora) expect_close(params[pre + "lora_magnitude_vector"].grad(), f32(c["grad_magnitude"]), "grad magnitude");
        check(pvt->merge(p, &err), err);
        expect_close(model.site().weight.detach(), f32(c["merged_weight"]), "merged weight");
        pvt->destroy(p);
        mvt.destroy(m);
    }
}

}  // namespace
}  // namespace fthost::test
