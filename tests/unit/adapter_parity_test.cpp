// lora and dora (and qlora, below) against PEFT 0.21: one linear layer with a bias, adapted through the
// param plugins' C ABI, with the weights, input and output gradient that
// tests/fixtures/make_adapter_fixtures.py gave PEFT. Output, gradients (A, B, DoRA's
// magnitude, the input), the magnitude's initial value, the merged weight and the saved
// tensor names must match (float32, relative 1e-5).
#include "test_support.hpp"

#include <fthost/nf4.hpp>
#include <fthost/torch.hpp>

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

at::Tensor f32(const json& j) { return tensor_from_json(j, at::kFloat); }

// A model that is one linear site with a bias: forward applies it to the "x" input.
template <int In, int Out>
class LinearModel : public fthost::ModelBase {
public:
    LinearModel(const fthost::Host&, const fthost::Config&) : site_(&register_linear("proj", In, Out, true, at::kFloat)) {}
    at::Tensor forward(const fthost::BatchView& b) { return (*site_)(b.extra("x")); }
    at::Tensor lm_head(const at::Tensor& h) { return h; }
    int64_t vocab_size() const { return Out; }
    fthost::LinearSite& site() { return *site_; }

private:
    fthost::LinearSite* site_;
};
using OneLinear = LinearModel<6, 5>;     // adapters_peft.json's layer
using QloraLinear = LinearModel<64, 24>;  // adapters_qlora_peft.json's (in_features: whole NF4 blocks)

// A one-linear model M with weight w and bias b, adapted by `plugin` through the C ABI.
template <class M = OneLinear>
struct Adapted {
    const ft_model_vtable* mvt = &fthost::detail::ModelThunks<M>::vtable;
    const ft_param_vtable* pvt = nullptr;
    ft_model* m = nullptr;
    ft_param* p = nullptr;
    std::map<std::string, at::Tensor> params;

    Adapted(const std::string& plugin_name, const std::string& toml, const at::Tensor& w, const at::Tensor& b) {
        Section empty;
        ft_error err{};
        check(mvt->create(host_api(), &empty, &m, &err), err);
        {
            at::NoGradGuard ng;
            model().site().weight.copy_(w);
            model().site().bias.copy_(b);
        }
        ps = plugin(FT_KIND_PARAM, plugin_name, toml);
        pvt = static_cast<const ft_param_vtable*>(ps.loaded->desc->vtable);
        check(pvt->create(host_api(), &ps.config, mvt, m, &p, &err), err);
        check(pvt->trainable_parameters(
                  p, [](void* u, const char* n, ft_tensor t) { (*static_cast<std::map<std::string, at::Tensor>*>(u))[n] = borrow(t); },
                  &params, &err),
              err);
    }
    ~Adapted() {
        pvt->destroy(p);
        mvt->destroy(m);
    }
    M& model() { return *reinterpret_cast<M*>(m); }
    at::Tensor forward(const at::Tensor& x) {
        HostBatch hb;
        hb.input_ids = hb.labels = hb.position_ids = hb.sequence_ids = at::zeros({1, 1}, at::kLong);
        hb.extras = {{"x", x}};
        ft_batch fb = as_ft_batch(hb, 1);
        ft_model_output out{sizeof(ft_model_output), nullptr};
        ft_error err{};
        check(mvt->forward(m, &fb, &out, &err), err);
        return take(out.hidden_states);
    }
    void merge() {
        ft_error err{};
        check(pvt->merge(p, &err), err);
    }

private:
    PluginSection ps;
};

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
    ASSERT_EQ(got.sizes(), want.sizes()) << what;
    const double err = (got - want).abs().max().item<double>(), scale = std::max(1.0, want.abs().max().item<double>());
    EXPECT_LE(err / scale, 1e-5) << what << ": max error " << err;
}

// Sets the fixture's adapter weights (A, B, DoRA's magnitude after checking its initial
// value) on `a`, runs the fixture's input through it, and compares the output and the
// gradients of sum(y * grad_out) with what PEFT computed.
template <class M>
void expect_peft_forward_and_gradients(Adapted<M>& a, const json& c, bool dora) {
    const std::string pre = "base_model.model.proj.";
    auto& params = a.params;
    if (dora) expect_close(params[pre + "lora_magnitude_vector"], f32(c["initial_magnitude"]), "initial magnitude");
    {
        at::NoGradGuard ng;
        params[pre + "lora_A.weight"].copy_(f32(c["lora_A"]));
        params[pre + "lora_B.weight"].copy_(f32(c["lora_B"]));
        if (dora) params[pre + "lora_magnitude_vector"].copy_(f32(c["magnitude"]));
    }
    at::Tensor x = f32(c["x"]).requires_grad_(true);
    at::Tensor y = a.forward(x);
    expect_close(y.detach(), f32(c["y"]), "output");
    (y * f32(c["grad_out"])).sum().backward();
    expect_close(params[pre + "lora_A.weight"].grad(), f32(c["grad_A"]), "grad A");
    expect_close(params[pre + "lora_B.weight"].grad(), f32(c["grad_B"]), "grad B");
    expect_close(x.grad(), f32(c["grad_x"]), "grad x");
    if (dora) expect_close(params[pre + "lora_magnitude_vector"].grad(), f32(c["grad_magnitude"]), "grad magnitude");
}

TEST(AdapterParity, LoraAndDoraEqualPeft) {
    const json all = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/adapters_peft.json"));
    ASSERT_EQ(all["cases"].size(), 2u);
    for (const auto& c : all["cases"]) {
        const bool dora = c["use_dora"].get<bool>();
        SCOPED_TRACE(dora ? "dora" : "lora");
        Adapted<> a(dora ? "dora" : "lora",
                  "r = " + std::to_string(c["r"].get<int>()) + "\nlora_alpha = " +
                      std::to_string(c["lora_alpha"].get<double>()) + "\ntarget_modules = [\"proj\"]\n",
                  f32(c["weight"]), f32(c["bias"]));
        auto& params = a.params;
        std::vector<std::string> names;
        for (const auto& [n, _] : params) names.push_back(n);
        EXPECT_EQ(names, c["saved_names"].get<std::vector<std::string>>());
        expect_peft_forward_and_gradients(a, c, dora);
        a.merge();
        expect_close(a.model().site().weight.detach(), f32(c["merged_weight"]), "merged weight");
    }
}

// qlora is lora (use_dora: dora) over the dequantised NF4 weight: with the same adapter
// weights, its output, gradients, initial magnitude and merged weight equal those of
// lora/dora on a model whose weight is dequantise(quantise(W)) — whose maths the test
// above pins to PEFT's.
TEST(AdapterParity, QloraIsLoraOverTheDequantisedWeight) {
    at::manual_seed(9);
    const at::Tensor w = at::randn({5, 6}) * 0.3, b = at::randn({5});
    const at::Tensor wq = fthost::Nf4Weight::quantize(w, true).dequantize(at::kFloat);
    ASSERT_GT(max_abs_diff(w, wq), 1e-4);  // quantisation changed the weight
    for (const bool dora : {false, true}) {
        SCOPED_TRACE(dora ? "qdora" : "qlora");
        const std::string common = "r = 2\nlora_alpha = 4.0\ntarget_modules = [\"proj\"]\n";
        Adapted<> q("qlora", common + (dora ? "use_dora = true\n" : ""), w, b);
        Adapted<> ref(dora ? "dora" : "lora", common, wq, b);
        EXPECT_EQ(q.model().site().weight.numel(), 0) << "the full-precision weight was not freed";
        const std::string pre = "base_model.model.proj.";
        if (dora) expect_close(q.params[pre + "lora_magnitude_vector"], ref.params[pre + "lora_magnitude_vector"], "initial magnitude");
        {
            at::NoGradGuard ng;
            for (auto& [name, t] : q.params) {
                t.normal_(0, 0.5);
                ref.params.at(name).copy_(t);
            }
        }
        const at::Tensor x0 = at::randn({3, 6}), g = at::randn({3, 5});
        at::Tensor xq = x0.clone().requires_grad_(true), xr = x0.clone().requires_grad_(true);
        const at::Tensor yq = q.forward(xq), yr = ref.forward(xr);
        expect_close(yq.detach(), yr.detach(), "output");
        (yq * g).sum().backward();
        (yr * g).sum().backward();
        expect_close(xq.grad(), xr.grad(), "grad x");
        for (const auto& [name, t] : q.params) expect_close(t.grad(), ref.params.at(name).grad(), "grad " + name);
        q.merge();
        ref.merge();
        expect_close(q.model().site().weight.detach(), ref.model().site().weight.detach(), "merged weight");
    }
}

// qlora and qlora + use_dora against PEFT over a bitsandbytes Linear4bit layer (NF4,
// fp32 compute; tests/fixtures/make_qlora_fixtures.py): the plugin quantises the same
// full-precision weight itself, so this checks quantisation and adapter maths together.
TEST(AdapterParity, QloraAndQdoraEqualPeftOverBitsandbytes) {
    const json all = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/adapters_qlora_peft.json"));
    ASSERT_EQ(all["cases"].size(), 2u);
    for (const auto& c : all["cases"]) {
        const bool dora = c["use_dora"].get<bool>();
        SCOPED_TRACE(dora ? "qdora" : "qlora");
        Adapted<QloraLinear> a("qlora",
                               "r = " + std::to_string(c["r"].get<int>()) + "\nlora_alpha = " +
                                   std::to_string(c["lora_alpha"].get<double>()) +
                                   "\ntarget_modules = [\"proj\"]\nbnb_4bit_use_double_quant = false\n" +
                                   (dora ? "use_dora = true\n" : ""),
                               f32(c["weight"]), f32(c["bias"]));
        expect_peft_forward_and_gradients(a, c, dora);
    }
}

}  // namespace
}  // namespace fthost::test
