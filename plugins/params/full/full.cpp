// full — full fine-tuning: every model parameter trains, in float32 (a checkpoint's bf16
// or fp16 weights are widened here: they are the optimizer's masters); linear sites keep
// their plain forward. There is nothing to merge, and no adapter to switch off.
#include <fthost/torch.hpp>

namespace {

class Full : public fthost::ParamBase {
public:
    Full(const fthost::Host&, const fthost::Config&, fthost::ModelRef model) : ParamBase(model) {
        params_ = model.named_parameters();
        at::NoGradGuard ng;
        for (auto& [_, p] : params_) {
            if (p.is_floating_point() && at::promote_types(p.scalar_type(), at::kFloat) != p.scalar_type())
                p.set_data(p.to(at::kFloat));
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

FTHOST_PARAM(full, Full, "full", "0.1.0", "full fine-tuning: every parameter trains", nullptr);
FTHOST_PLUGINS(full)
