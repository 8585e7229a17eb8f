// simpo — Simple Preference Optimization (reference-free), as TRL 0.28's CPOTrainer
// computes it with loss_type = "simpo".
//
// A batch holds B pairs (rows [0, B) chosen, [B, 2B) rejected), labels on completion
// tokens. With p̄ = length-averaged completion log-prob under the policy,
//   z = (p̄_w − p̄_l) − γ/β,   loss = −(1−ε) log σ(βz) − ε log σ(−βz)
// i.e. the reward β p̄ must beat the rejected one by a margin γ. cpo_alpha > 0 adds
// α · NLL(chosen completion tokens) (CPO-SimPO). Metrics: rewards β p̄ and logps p̄.
#include <fthost/preference.hpp>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "2.0", "reward scale β (the SimPO paper uses 2.0 to 2.5)"),
    option("simpo_gamma", FT_OPT_FLOAT, "0.5", "target reward margin γ"),
    option("label_smoothing", FT_OPT_FLOAT, "0.0", "assumed fraction of flipped preference labels, in [0, 0.5)"),
    option("cpo_alpha", FT_OPT_FLOAT, "0.0", "weight of the NLL on chosen completions (CPO-SimPO); 0 = pure SimPO"),
};

class Simpo {
public:
    static constexpr ft_data_shape data_shape = FT_DATA_PAIRS;

    Simpo(const fthost::Host&, const fthost::Config& cfg)
        : beta_(cfg.get_float("beta")),
          gamma_(cfg.get_float("simpo_gamma")),
          smoothing_(cfg.get_float("label_smoothing")),
          alpha_(cfg.get_float("cpo_alpha")) {}

    static void validate(const fthost::Config& cfg) {
        if (cfg.get_float("beta") <= 0) cfg.fail("beta", "must be > 0");
        const double eps = cfg.get_float("label_smoothing");
        if (eps < 0 || eps >= 0.5) cfg.fail("label_smoothing", "must be in [0, 0.5)");
        if (cfg.get_float("cpo_alpha") < 0) cfg.fail("cpo_alpha", "must be >= 0");
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const at::Tensor mask = fthost::label_mask(batch);
        const at::Tensor tokens = run.token_logprobs();
        auto [p_w, p_l] = fthost::split_pairs(fthost::sequence_logps(tokens, mask).mean());
        const at::Tensor z = (p_w - p_l) - gamma_ / beta_;
        at::Tensor losses = -(1 - smoothing_) * at::log_sigmoid(beta_ * z) - smoothing_ * at::log_sigmoid(-beta_ * z);
        const int64_t pairs = p_w.size(0);
        at::Tensor loss = losses.sum() / fthost::examples_denominator(batch, pairs);
        if (alpha_ > 0) {
            auto [tok_w, tok_l] = fthost::split_pairs(tokens);
            auto [mask_w, mask_l] = fthost::split_pairs(mask);
            const at::Tensor nll = -(tok_w * mask_w).sum() / mask_w.sum().clamp_min(1);
            loss = loss + alpha_ * nll * (static_cast<double>(pairs) / fthost::examples_denominator(batch, pairs));
            run.metric("nll_loss", nll.detach());
        }
        fthost::report_pair_metrics(run, beta_ * p_w.detach(), beta_ * p_l.detach(), p_w.detach(), p_l.detach());
        return loss;
    }

private:
    double beta_, gamma_, smoothing_, alpha_;
};

}  // namespace

FTHOST_OBJECTIVE(simpo, Simpo, FT_LABELS_COMPLETION, "simpo", "0.1.0",
                 "SimPO: reference-free, length-normalised preference loss with a reward margin", kOptions);
FTHOST_PLUGINS(simpo)
