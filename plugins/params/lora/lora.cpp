// lora and dora — low-rank adapters as PEFT computes them (peft/tuners/lora/layer.py,
// dora.py). One library, two plugins: dora is lora with PEFT's use_dora.
//   lora: y = x W^T + b + s * dropout(x) A^T B^T,   s = alpha / r   (alpha / sqrt(r) with rsLoRA)
//   dora: with a magnitude m [out] and n = ||W + s sg(B A)|| per output row (detached),
//         g = m / n,  y = x W^T + b + (g - 1) * (x' W^T) + g * s * x' A^T B^T,
//         x' = dropout(x) (x itself without dropout); m starts as ||W|| per row.
// A [r, in] ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B [out, r] = 0,
// so a fresh adapter leaves the model unchanged. Base weights are frozen. Tensor names
// follow PEFT's saved adapters: base_model.model.<site>.lora_A.weight / lora_B.weight
// (/ lora_magnitude_vector).
#include <fthost/torch.hpp>

#include <cmath>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("r", FT_OPT_INT, "8", "adapter rank"),
    option("lora_alpha", FT_OPT_FLOAT, "8.0", "scaling numerator: s = lora_alpha / r"),
    option("lora_dropout", FT_OPT_FLOAT, "0.0", "dropout on the adapter branch input"),
    option("target_modules", FT_OPT_STRING_LIST, "[\"q_proj\", \"v_proj\"]",
           "site names or name suffixes to adapt; [\"all-linear\"] adapts every linear site"),
    option("use_rslora", FT_OPT_BOOL, "false", "rank-stabilised scaling s = lora_alpha / sqrt(r)"),
    option("init_lora_weights", FT_OPT_STRING, "\"kaiming\"", "A's initialisation: kaiming or gaussian (B is always 0)"),
};

// PEFT's rule: a target matches the whole name or its last dotted components.
bool targeted(const std::string& site, const std::vector<std::string>& targets) {
    for (const auto& t : targets) {
        if (t == "all-linear" || site == t) return true;
        if (site.size() > t.size() && site.compare(site.size() - t.size(), t.size(), t) == 0 &&
            site[site.size() - t.size() - 1] == '.')
            return true;
    }
    return false;
}

template <bool kDora>
class Adapters : public fthost::ParamBase {
public:
    Adapters(const fthost::Host&, const fthost::Config& cfg, fthost::ModelRef model) : ParamBase(model) {
        validate(cfg);
        const int64_t r = cfg.get_int("r");
        const double alpha = cfg.get_float("lora_alpha");
        scale_ = cfg.get_bool("use_rslora") ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
        dropout_ = cfg.get_float("lora_dropout");
        const std::string init = cfg.get_string("init_lora_weights");
        const auto targets = cfg.get_string_list("target_modules");

        for (auto& [_, p] : model.named_parameters()) p.set_requires_grad(false);
        for (const auto& site : model.sites()) {
            if (!targeted(site.name, targets)) continue;
            Adapter a;
            a.site = site;
            const auto opts = site.weight.options();
            at::NoGradGuard ng;
            if (init == "gaussian")
                a.A = at::empty({r, site.in_features}, opts).normal_(0, 1.0 / static_cast<double>(r));
            else {
                const double bound = 1.0 / std::sqrt(static_cast<double>(site.in_features));
                a.A = at::empty({r, site.in_features}, opts).uniform_(-bound, bound);
            }
            a.B = at::zeros({site.out_features, r}, opts);
            a.A.set_requires_grad(true);
            a.B.set_requires_grad(true);
            if (kDora) {
                a.m = at::linalg_vector_norm(site.weight.to(at::kFloat), 2, {1}).to(site.weight.scalar_type());
                a.m.set_requires_grad(true);
            }
            adapters_.push_back(a);
        }
        if (adapters_.empty()) cfg.fail("target_modules", "matches none of the model's linear sites");
        for (size_t i = 0; i < adapters_.size(); ++i) install(adapters_[i].site.index, [this, i](const at::Tensor& x) { return forward(i, x); });
    }

    static void validate(const fthost::Config& cfg) {
        if (cfg.get_int("r") < 1) cfg.fail("r", "must be at least 1");
        const double p = cfg.get_float("lora_dropout");
        if (p < 0 || p >= 1) cfg.fail("lora_dropout", "must be in [0, 1)");
        const std::string init = cfg.get_string("init_lora_weights");
        if (init != "kaiming" && init != "gaussian") cfg.fail("init_lora_weights", "must be kaiming or gaussian");
        if (cfg.get_string_list("target_modules").empty()) cfg.fail("target_modules", "names no site");
    }

    fthost::NamedTensors trainable_parameters() {
        fthost::NamedTensors out;
        for (const auto& a : adapters_) {
            out.emplace_back("base_model.model." + a.site.name + ".lora_A.weight", a.A);
            out.emplace_back("base_model.model." + a.site.name + ".lora_B.weight", a.B);
            if (kDora) out.emplace_back("base_model.model." + a.site.name + ".lora_magnitude_vector", a.m);
        }
        return out;
    }
    bool is_full() const { return false; }
    void set_enabled(bool on) { enabled_ = on; }

    // W <- W + s B A (dora: W <- diag(m / n) (W + s B A)), then the sites compute the
    // plain linear again.
    void merge() {
        at::NoGradGuard ng;
        for (const auto& a : adapters_) {
            at::Tensor w = a.site.weight.to(at::kFloat) + at::matmul(a.B.to(at::kFloat), a.A.to(at::kFloat)) * scale_;
            if (kDora) w = w * (a.m.to(at::kFloat) / at::linalg_vector_norm(w, 2, {1})).unsqueeze(1);
            a.site.weight.copy_(w.to(a.site.weight.scalar_type()));
            uninstall(a.site.index);
        }
        adapters_.clear();
    }

private:
    struct Adapter {
        fthost::ModelRef::Site site;
        at::Tensor A, B, m;  // m: DoRA's magnitude
    };

    at::Tensor forward(size_t i, const at::Tensor& x) const {
        const Adapter& a = adapters_[i];
        at::Tensor y = at::linear(x, a.site.weight, a.site.bias);
        if (!enabled_) return y;
        const bool drop = dropout_ > 0 && training();
        at::Tensor xd = drop ? at::dropout(x, dropout_, true) : x;
        at::Tensor lora = at::linear(at::linear(xd, a.A), a.B) * scale_;
        if (!kDora) return y + lora;
        // The norm is a constant in backprop (DoRA paper §4.3, PEFT's weight_norm.detach()).
        at::Tensor n;
        {
            at::NoGradGuard ng;
            n = at::linalg_vector_norm(a.site.weight + at::matmul(a.B, a.A) * scale_, 2, {1});
        }
        const at::Tensor g = a.m / n;
        const at::Tensor base = drop ? at::linear(xd, a.site.weight) : (a.site.bias.defined() ? y - a.site.bias : y);
        return y + (g - 1) * base + g * lora;
    }

    std::vector<Adapter> adapters_;
    double scale_ = 1.0, dropout_ = 0.0;
    bool enabled_ = true;
};

}  // namespace

FTHOST_PARAM(lora, Adapters<false>, "lora", "0.1.0", "LoRA adapters (PEFT-compatible names and maths)", kOptions);
FTHOST_PARAM(dora, Adapters<true>, "dora", "0.1.0",
             "DoRA: LoRA plus a learned magnitude per output row (PEFT's use_dora)", kOptions);
FTHOST_PLUGINS(lora, dora)
