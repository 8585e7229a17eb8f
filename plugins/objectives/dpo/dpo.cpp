// dpo — Direct Preference Optimization, as TRL 0.28's DPOTrainer computes it.
//
// A batch holds B pairs: rows [0, B) chosen, [B, 2B) rejected, labels on the completion
// tokens. With S(y) = Σ completion log-probs (length-averaged for ipo) under the policy
// (π) and the frozen reference (ref), h = (π_w − π_l) − (ref_w − ref_l):
//   sigmoid  −(1−ε) log σ(βh) − ε log σ(−βh)         (ε > 0: conservative DPO)
//   robust   [−(1−ε) log σ(βh) + ε log σ(−βh)] / (1 − 2ε)
//   hinge    relu(1 − βh)
//   ipo      (h − 1/(2β))²
// rpo_alpha > 0 adds α · (mean NLL of the chosen completion tokens) to every pair (RPO).
// The loss is the mean over the pairs of the effective batch. Metrics: TRL's
// rewards/{chosen,rejected,accuracies,margins} (rewards = β(π − ref)) and logps/*.
#include <fthost/preference.hpp>

#include <set>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "0.1", "strength of the pull towards the reference (TRL's beta)"),
    option("loss_type", FT_OPT_STRING, "\"sigmoid\"", "sigmoid, robust, hinge or ipo"),
    option("label_smoothing", FT_OPT_FLOAT, "0.0",
           "assumed fraction of flipped preference labels, for sigmoid (conservative DPO) and robust; in [0, 0.5)"),
    option("rpo_alpha", FT_OPT_FLOAT, "0.0", "weight of the NLL on chosen completions added to the loss (RPO); 0 = off"),
};

const std::set<std::string> kLossTypes = {"sigmoid", "robust", "hinge", "ipo"};

class Dpo {
public:
    static constexpr ft_data_shape data_shape = FT_DATA_PAIRS;
    static constexpr uint32_t needs = FT_NEEDS_REFERENCE;

    Dpo(const fthost::Host&, const fthost::Config& cfg)
        : beta_(cfg.get_float("beta")),
          smoothing_(cfg.get_float("label_smoothing")),
          rpo_alpha_(cfg.get_float("rpo_alpha")),
          type_(cfg.get_string("loss_type")) {}

    static void validate(const fthost::Config& cfg) {
        const std::string type = cfg.get_string("loss_type");
        if (!kLossTypes.count(type)) cfg.fail("loss_type", "must be one of sigmoid, robust, hinge, ipo (got \"" + type + "\")");
        if (cfg.get_float("beta") <= 0) cfg.fail("beta", "must be > 0");
        const double eps = cfg.get_float("label_smoothing");
        if (eps < 0 || eps >= 0.5) cfg.fail("label_smoothing", "must be in [0, 0.5)");
        if (eps > 0 && (type == "hinge" || type == "ipo"))
            cfg.fail("label_smoothing", "applies to loss_type sigmoid and robust only, not " + type);
        if (cfg.get_float("rpo_alpha") < 0) cfg.fail("rpo_alpha", "must be >= 0");
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const at::Tensor mask = fthost::label_mask(batch);
        const at::Tensor policy_tokens = run.token_logprobs();
        const auto policy = fthost::sequence_logps(policy_tokens, mask);
        const auto ref = fthost::sequence_logps(run.token_logprobs(fthost::RunModel::reference), mask);
        // IPO compares length-averaged log-probs; the others summed ones.
        const bool average = type_ == "ipo";
        auto [pi_w, pi_l] = fthost::split_pairs(average ? policy.mean() : policy.sum);
        auto [ref_w, ref_l] = fthost::split_pairs(average ? ref.mean() : ref.sum);

        const at::Tensor h = (pi_w - pi_l) - (ref_w - ref_l);
        at::Tensor losses;
        if (type_ == "sigmoid") {
            losses = -(1 - smoothing_) * at::log_sigmoid(beta_ * h) - smoothing_ * at::log_sigmoid(-beta_ * h);
        } else if (type_ == "robust") {
            losses = (-(1 - smoothing_) * at::log_sigmoid(beta_ * h) + smoothing_ * at::log_sigmoid(-beta_ * h)) /
                     (1 - 2 * smoothing_);
        } else if (type_ == "hinge") {
            losses = at::relu(1 - beta_ * h);
        } else {
            losses = (h - 1 / (2 * beta_)).pow(2);
        }
        if (rpo_alpha_ > 0) {
            auto [tok_w, tok_l] = fthost::split_pairs(policy_tokens);
            auto [mask_w, mask_l] = fthost::split_pairs(mask);
            const at::Tensor nll = -(tok_w * mask_w).sum() / mask_w.sum().clamp_min(1);
            losses = losses + rpo_alpha_ * nll;
            run.metric("nll_loss", nll.detach());
        }
        const at::Tensor chosen_rewards = (beta_ * (pi_w - ref_w)).detach();
        const at::Tensor rejected_rewards = (beta_ * (pi_l - ref_l)).detach();
        fthost::report_pair_metrics(run, chosen_rewards, rejected_rewards, pi_w.detach(), pi_l.detach());
        return losses.sum() / fthost::examples_denominator(batch, pi_w.size(0));
    }

private:
    double beta_, smoothing_, rpo_alpha_;
    std::string type_;
};

}  // namespace

FTHOST_OBJECTIVE(dpo, Dpo, FT_LABELS_COMPLETION, "dpo", "0.1.0",
                 "Direct Preference Optimization (sigmoid, robust, hinge, ipo; cDPO; RPO) on prompt/chosen/rejected",
                 kOptions);
FTHOST_PLUGINS(dpo)
