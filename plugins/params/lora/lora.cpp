// lora, dora and qlora — low-rank adapters as PEFT computes them (peft/tuners/lora/
// layer.py, dora.py, bnb.py). One library, three plugins:
//   lora:  y = x W^T + b + s * dropout(x) A^T B^T,   s = alpha / r   (alpha / sqrt(r) with rsLoRA)
//   dora:  with a magnitude m [out] and n = ||W + s sg(B A)|| per output row (detached),
//          g = m / n,  y = x W^T + b + (g - 1) * (x' W^T) + g * s * x' A^T B^T,
//          x' = dropout(x) (x itself without dropout); m starts as ||W|| per row.
//   qlora: every linear site's W is quantised to NF4 at load (bitsandbytes' format,
//          optionally with double-quantised constants, <fthost/nf4.hpp>) and the full-
//          precision weight is freed; the base computes in bnb_4bit_compute_dtype with W
//          dequantised on the fly; adapters as lora (use_dora = true: as dora, W being
//          the dequantised weight, as PEFT's DoRA over bitsandbytes layers).
// A [r, in] ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B [out, r] = 0,
// so a fresh adapter leaves the model unchanged. Base weights are frozen, in the dtype the
// checkpoint stores them in (a bf16 base computes in bf16, as PEFT's); adapters train in
// float32 (PEFT's autocast_adapter_dtype). Tensor names
// and adapter_config.json follow PEFT's saved adapters: base_model.model.<site>.lora_A.weight
// / lora_B.weight (/ lora_magnitude_vector).
#include <fthost/nf4.hpp>
#include <fthost/torch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

namespace {

using fthost::option;

#define FTHOST_LORA_OPTIONS                                                                                            \
    option("r", FT_OPT_INT, "8", "adapter rank"),                                                                      \
        option("lora_alpha", FT_OPT_FLOAT, "8.0", "scaling numerator: s = lora_alpha / r"),                            \
        option("lora_dropout", FT_OPT_FLOAT, "0.0", "dropout on the adapter branch input"),                            \
        option("target_modules", FT_OPT_STRING_LIST, "[]",                                                             \
               "site names or name suffixes to adapt; [\"all-linear\"] adapts every linear site; [] the model's "  \
               "defaults (PEFT's for its architecture: q, v for T5), else q_proj, v_proj"),                            \
        option("use_rslora", FT_OPT_BOOL, "false", "rank-stabilised scaling s = lora_alpha / sqrt(r)"),                \
        option("init_lora_weights", FT_OPT_STRING, "\"kaiming\"", "A's initialisation: kaiming or gaussian (B is always 0)")

const ft_option kLoraOptions[] = {FTHOST_LORA_OPTIONS};
const ft_option kQloraOptions[] = {
    FTHOST_LORA_OPTIONS,
    option("use_dora", FT_OPT_BOOL, "false", "DoRA adapters over the 4-bit base (QDoRA)"),
    option("bnb_4bit_quant_type", FT_OPT_STRING, "\"nf4\"", "4-bit data type; nf4 is the one supported"),
    option("bnb_4bit_use_double_quant", FT_OPT_BOOL, "true",
           "quantise the per-64 absmax constants to 8 bits too (0.516 instead of 0.5625 bytes per weight)"),
    option("bnb_4bit_compute_dtype", FT_OPT_STRING, "\"auto\"",
           "dtype of the base matmul: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16"),
};

enum class Kind { lora, dora, qlora };

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

at::ScalarType compute_dtype(const std::string& name, const at::Device& device) {
    if (name == "auto") return device.is_cpu() ? at::kFloat : at::kBFloat16;
    if (name == "float32") return at::kFloat;
    if (name == "bfloat16") return at::kBFloat16;
    return at::kHalf;
}

template <Kind K>
class Adapters : public fthost::ParamBase {
public:
    static constexpr bool takes_base_on_host = K == Kind::qlora;

    Adapters(const fthost::Host& host, const fthost::Config& cfg, fthost::ModelRef model) : ParamBase(model) {
        validate(cfg);
        r_ = cfg.get_int("r");
        alpha_ = cfg.get_float("lora_alpha");
        rslora_ = cfg.get_bool("use_rslora");
        scale_ = rslora_ ? alpha_ / std::sqrt(static_cast<double>(r_)) : alpha_ / static_cast<double>(r_);
        dropout_ = cfg.get_float("lora_dropout");
        init_ = cfg.get_string("init_lora_weights");
        targets_ = cfg.get_string_list("target_modules");
        if (targets_.empty()) targets_ = model.default_adapter_targets();
        if (targets_.empty()) targets_ = {"q_proj", "v_proj"};
        dora_ = K == Kind::dora || (K == Kind::qlora && cfg.get_bool("use_dora"));

        for (auto& [_, p] : model.named_parameters()) p.set_requires_grad(false);
        const auto sites = model.sites();
        if (K == Kind::qlora) quantize_all(host, cfg, sites);
        for (size_t i = 0; i < sites.size(); ++i) {
            const auto& site = sites[i];
            if (!targeted(site.name, targets_)) continue;
            Adapter a;
            a.site = site;
            a.base = K == Kind::qlora ? static_cast<int64_t>(i) : -1;
            // Adapters train in float32 over a base of any dtype (PEFT's autocast_adapter_dtype).
            const at::ScalarType base_dtype = K == Kind::qlora ? dtype_[i] : site.weight.scalar_type();
            const auto opts = site.weight.options().dtype(at::promote_types(base_dtype, at::kFloat));
            at::NoGradGuard ng;
            if (init_ == "gaussian")
                a.A = at::empty({r_, site.in_features}, opts).normal_(0, 1.0 / static_cast<double>(r_));
            else {
                const double bound = 1.0 / std::sqrt(static_cast<double>(site.in_features));
                a.A = at::empty({r_, site.in_features}, opts).uniform_(-bound, bound);
            }
            a.B = at::zeros({site.out_features, r_}, opts);
            a.A.set_requires_grad(true);
            a.B.set_requires_grad(true);
            if (dora_) {
                a.m = at::linalg_vector_norm(base_weight(a, at::kFloat), 2, {1}).to(opts.dtype());
                a.m.set_requires_grad(true);
            }
            adapters_.push_back(a);
        }
        if (adapters_.empty()) cfg.fail("target_modules", "matches none of the model's linear sites");
        adapted_.assign(sites.size(), -1);
        for (size_t i = 0; i < adapters_.size(); ++i) adapted_[adapters_[i].site.index] = static_cast<int64_t>(i);
        for (size_t i = 0; i < sites.size(); ++i) {
            if (adapted_[i] >= 0) {
                const size_t a = static_cast<size_t>(adapted_[i]);
                install(sites[i].index, [this, a](const at::Tensor& x) { return forward(a, x); });
            } else if (K == Kind::qlora) {
                install(sites[i].index, [this, i](const at::Tensor& x) { return quantized_linear(i, x); });
            }
        }
    }

    static void validate(const fthost::Config& cfg) {
        if (cfg.get_int("r") < 1) cfg.fail("r", "must be at least 1");
        const double p = cfg.get_float("lora_dropout");
        if (p < 0 || p >= 1) cfg.fail("lora_dropout", "must be in [0, 1)");
        const std::string init = cfg.get_string("init_lora_weights");
        if (init != "kaiming" && init != "gaussian") cfg.fail("init_lora_weights", "must be kaiming or gaussian");
        if constexpr (K == Kind::qlora) {
            if (cfg.get_string("bnb_4bit_quant_type") != "nf4")
                cfg.fail("bnb_4bit_quant_type", "only nf4 is supported (QLoRA's data type)");
            const std::string dt = cfg.get_string("bnb_4bit_compute_dtype");
            if (dt != "auto" && dt != "float32" && dt != "bfloat16" && dt != "float16")
                cfg.fail("bnb_4bit_compute_dtype", "must be auto, float32, bfloat16 or float16");
        }
    }

    fthost::NamedTensors trainable_parameters() {
        fthost::NamedTensors out;
        for (const auto& a : adapters_) {
            out.emplace_back("base_model.model." + a.site.name + ".lora_A.weight", a.A);
            out.emplace_back("base_model.model." + a.site.name + ".lora_B.weight", a.B);
            if (dora_) out.emplace_back("base_model.model." + a.site.name + ".lora_magnitude_vector", a.m);
        }
        return out;
    }
    bool is_full() const { return false; }
    void set_enabled(bool on) { enabled_ = on; }

    // W <- W + s B A (dora: W <- diag(m / n) (W + s B A)), then the sites compute the
    // plain linear again. Under qlora W is the dequantised base, written back at full
    // precision into the site's (freed) weight, so the result is an ordinary model.
    void merge() {
        at::NoGradGuard ng;
        for (const auto& a : adapters_) {
            at::Tensor w = base_weight(a, at::kFloat) + at::matmul(a.B.to(at::kFloat), a.A.to(at::kFloat)) * scale_;
            if (dora_) w = w * (a.m.to(at::kFloat) / at::linalg_vector_norm(w, 2, {1})).unsqueeze(1);
            restore(a.site, w);
            uninstall(a.site.index);
        }
        for (size_t i = 0; i < quantized_.size(); ++i) {
            if (adapted_[i] >= 0) continue;
            restore(sites_[i], quantized_[i].dequantize(at::kFloat));
            uninstall(sites_[i].index);
        }
        adapters_.clear();
        quantized_.clear();
    }

    // PEFT's adapter_config.json for these adapters (PEFT 0.21's keys; the defaults of
    // everything fthost does not use).
    std::string peft_config() const {
        using nlohmann::json;
        std::set<std::string> resolved;
        const bool all = std::find(targets_.begin(), targets_.end(), "all-linear") != targets_.end();
        for (const auto& a : adapters_) resolved.insert(a.site.name);
        json targets = all ? json(std::vector<std::string>(resolved.begin(), resolved.end())) : json(targets_);
        json c = {{"alora_invocation_tokens", nullptr}, {"alpha_pattern", json::object()}, {"arrow_config", nullptr},
                  {"auto_mapping", nullptr}, {"base_model_name_or_path", nullptr}, {"bias", "none"},
                  {"corda_config", nullptr}, {"ensure_weight_tying", false}, {"eva_config", nullptr},
                  {"exclude_modules", nullptr}, {"fan_in_fan_out", false}, {"inference_mode", true},
                  {"init_lora_weights", init_ == "gaussian" ? json("gaussian") : json(true)}, {"kasa_config", nullptr},
                  {"layer_replication", nullptr}, {"layers_pattern", nullptr}, {"layers_to_transform", nullptr},
                  {"loftq_config", json::object()}, {"lora_alpha", alpha_}, {"lora_bias", false},
                  {"lora_dropout", dropout_}, {"lora_ga_config", nullptr}, {"megatron_config", nullptr},
                  {"megatron_core", "megatron.core"}, {"modules_to_save", nullptr}, {"monteclora_config", nullptr},
                  {"peft_type", "LORA"}, {"peft_version", "0.21.2"}, {"qalora_group_size", 16}, {"r", r_},
                  {"rank_pattern", json::object()}, {"revision", nullptr}, {"target_modules", targets},
                  {"target_parameters", nullptr}, {"task_type", "CAUSAL_LM"}, {"trainable_token_indices", nullptr},
                  {"use_bdlora", nullptr}, {"use_dora", dora_}, {"use_qalora", false}, {"use_rslora", rslora_},
                  {"velora_config", nullptr}};
        // PEFT writes whole numbers as ints (lora_alpha = 16, not 16.0).
        if (alpha_ == std::floor(alpha_)) c["lora_alpha"] = static_cast<int64_t>(alpha_);
        return c.dump();
    }

private:
    struct Adapter {
        fthost::ModelRef::Site site;
        at::Tensor A, B, m;  // m: DoRA's magnitude
        int64_t base = -1;   // index into quantized_ under qlora
    };

    // Quantises every linear site (bitsandbytes quantises every linear layer but the LM
    // head, adapted or not) on the run's device and frees the full-precision weights. The
    // host leaves them in host memory (takes_base_on_host): each crosses to the device
    // alone, so the device holds the NF4 base and one weight, never the whole base.
    void quantize_all(const fthost::Host& host, const fthost::Config& cfg, const std::vector<fthost::ModelRef::Site>& sites) {
        const bool dq = cfg.get_bool("bnb_4bit_use_double_quant");
        const std::string cdt = cfg.get_string("bnb_4bit_compute_dtype");
        const std::string run_device = host.run_device();
        int64_t weights = 0, bytes = 0;
        at::NoGradGuard ng;
        for (const auto& site : sites) {
            const at::Device device = run_device.empty() ? site.weight.device() : at::Device(run_device);
            const at::Tensor w = site.weight.to(device);
            quantized_.push_back(fthost::Nf4Weight::quantize(w, dq));
            dtype_.push_back(w.scalar_type());
            compute_.push_back(compute_dtype(cdt, device));
            weights += w.numel();
            bytes += quantized_.back().storage_bytes();
            // Free the full-precision storage: the model keeps an empty tensor in its place.
            site.weight.set_(at::empty({0}, site.weight.options().device(device)));
        }
        sites_ = sites;
        char msg[160];
        std::snprintf(msg, sizeof msg, "%zu linear sites in NF4%s: %.4f bytes per base weight (%lld weights, %lld bytes)",
                      sites.size(), dq ? " with double quantisation" : "",
                      static_cast<double>(bytes) / static_cast<double>(std::max<int64_t>(weights, 1)),
                      static_cast<long long>(weights), static_cast<long long>(bytes));
        host.log(FT_LOG_INFO, "qlora", msg);
    }

    void restore(const fthost::ModelRef::Site& site, const at::Tensor& w) const {
        const at::ScalarType dtype = K == Kind::qlora ? dtype_.at(site.index) : site.weight.scalar_type();
        site.weight.set_(w.to(dtype).view({site.out_features, site.in_features}).clone());
    }

    // The base weight as the forward sees it: the site's weight, or the dequantised NF4.
    at::Tensor base_weight(const Adapter& a, at::ScalarType dtype) const {
        if (a.base < 0) return a.site.weight.to(dtype);
        return quantized_[static_cast<size_t>(a.base)].dequantize(dtype);
    }

    at::Tensor base_linear(const Adapter& a, const at::Tensor& x) const {
        if (a.base < 0) return fthost::ops::linear(x, a.site.weight, a.site.bias);  // in a stored bf16 W's dtype
        return quantized_linear(static_cast<size_t>(a.base), x);
    }

    // bitsandbytes' Linear4bit: x in the compute dtype, W dequantised, result cast back.
    at::Tensor quantized_linear(size_t i, const at::Tensor& x) const {
        const at::ScalarType cdt = compute_[i];
        const at::Tensor& bias = sites_[i].bias;
        return quantized_[i].linear(x.to(cdt), bias.defined() ? bias.to(cdt) : bias).to(x.scalar_type());
    }

    at::Tensor forward(size_t i, const at::Tensor& x) const {
        const Adapter& a = adapters_[i];
        at::Tensor y = base_linear(a, x);
        if (!enabled_) return y;
        const bool drop = dropout_ > 0 && training();
        const at::Tensor xa = x.to(a.A.scalar_type());  // the adapter runs in its own dtype
        at::Tensor xd = drop ? at::dropout(xa, dropout_, true) : xa;
        at::Tensor lora = (at::linear(at::linear(xd, a.A), a.B) * scale_).to(y.scalar_type());
        if (!dora_) return y + lora;
        // The norm is a constant in backprop (DoRA paper §4.3, PEFT's weight_norm.detach()).
        at::Tensor n;
        {
            at::NoGradGuard ng;
            n = at::linalg_vector_norm(base_weight(a, a.A.scalar_type()) + at::matmul(a.B, a.A) * scale_, 2, {1});
        }
        const at::Tensor g = (a.m / n).to(y.scalar_type());
        const at::Tensor& bias = a.site.bias;
        at::Tensor base;
        if (drop) base = base_linear(a, xd.to(x.scalar_type())) - (bias.defined() ? bias : at::zeros({}, y.options()));
        else base = bias.defined() ? y - bias : y;
        return y + (g - 1) * base + g * lora;
    }

    std::vector<Adapter> adapters_;
    std::vector<int64_t> adapted_;  // site index -> adapter index, -1 when not adapted
    // qlora: per site, the NF4 weight, the weight's own dtype and the compute dtype.
    std::vector<fthost::Nf4Weight> quantized_;
    std::vector<at::ScalarType> dtype_, compute_;
    std::vector<fthost::ModelRef::Site> sites_;
    std::vector<std::string> targets_;
    std::string init_;
    int64_t r_ = 8;
    double alpha_ = 8, scale_ = 1.0, dropout_ = 0.0;
    bool rslora_ = false, dora_ = false, enabled_ = true;
};

}  // namespace

FTHOST_PARAM(lora, Adapters<Kind::lora>, "lora", "0.2.0", "LoRA adapters (PEFT-compatible names, maths and export)",
             kLoraOptions);
FTHOST_PARAM(dora, Adapters<Kind::dora>, "dora", "0.2.0",
             "DoRA: LoRA plus a learned magnitude per output row (PEFT's use_dora)", kLoraOptions);
FTHOST_PARAM(qlora, Adapters<Kind::qlora>, "qlora", "0.1.0",
             "QLoRA: LoRA (or DoRA) over a base quantised to NF4 at load, as bitsandbytes + PEFT", kQloraOptions);
FTHOST_PLUGINS(lora, dora, qlora)
