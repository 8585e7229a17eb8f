// full — full fine-tuning: every model parameter trains. weight_dtype float32 (the
// default): a checkpoint's bf16 or fp16 weights are widened here and are the optimizer's
// masters. weight_dtype bfloat16: weights and gradients stay bf16 (half the memory and
// all-reduce traffic), and the host's AdamW keeps float32 masters and moments as its
// state (which ZeRO-1 shards over the ranks) — DeepSpeed's bf16 mode. Linear sites keep
// their plain forward. There is nothing to merge, and no adapter to switch off.
#include <fthost/torch.hpp>

namespace {

const ft_option kFullOptions[] = {
    fthost::option("weight_dtype", FT_OPT_STRING, "\"float32\"",
                   "float32, or bfloat16: bf16 weights and gradients with float32 masters and moments in the "
                   "optimizer state (models that keep stored dtypes, like decoder)"),
};

class Full : public fthost::ParamBase {
public:
    static void validate(const fthost::Config& cfg) {
        const std::string wd = cfg.get_string("weight_dtype");
        if (wd != "float32" && wd != "bfloat16") cfg.fail("weight_dtype", "must be float32 or bfloat16, not '" + wd + "'");
    }

    Full(const fthost::Host&, const fthost::Config& cfg, fthost::ModelRef model) : ParamBase(model) {
        validate(cfg);
        const std::string wd = cfg.get_string("weight_dtype");
        if (wd == "bfloat16" && !model.keeps_stored_dtypes())
            cfg.fail("weight_dtype", "bfloat16 needs a model that computes with bf16 weights (keeps_stored_dtypes); "
                                     "this one computes in float32");
        const at::ScalarType dtype = wd == "bfloat16" ? at::kBFloat16 : at::kFloat;
        params_ = model.named_parameters();
        at::NoGradGuard ng;
        for (auto& [_, p] : params_) {
            if (p.is_floating_point() && p.scalar_type() != dtype) p.set_data(p.to(dtype));
            p.set_requires_grad(true);
        }
    }
    fthost::NamedTensors trainable_parameters() { return params_; }
    bool is_full() const { return true; }
    void set_enabled(bool on) {
        if (!on)
            throw fthost::Error("full fine-tuning has no adapter to switch off; the reference model needs a frozen copy",
                                FT_ERR_UNSUPPORTED);
    }
    void merge() {}

private:
    fthost::NamedTensors params_;
};

}  // namespace

FTHOST_PARAM(full, Full, "full", "0.2.0", "full fine-tuning: every parameter trains", kFullOptions);
FTHOST_PLUGINS(full)
