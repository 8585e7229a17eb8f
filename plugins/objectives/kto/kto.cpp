// kto — Kahneman-Tversky Optimization for binary feedback (thumbs up / down), as TRL
// 0.28's KTOTrainer computes it.
//
// A batch of B examples has 2B rows: the examples, then each prompt followed by the
// previous example's completion (the host's mismatched pairs). With S = Σ completion
// log-probs, Δ_i = S_π(y_i|x_i) − S_ref(y_i|x_i) and the reference point
//   z0 = max(0, mean_i [S_π(y′_i|x_i) − S_ref(y′_i|x_i)])        (detached)
// a desirable example costs w_D (1 − σ(β(Δ − z0))), an undesirable one
// w_U (1 − σ(β(z0 − Δ))); the loss is their mean over the examples of the effective
// batch. loss_type apo_zero_unpaired drops z0: 1 − σ(βΔ) and σ(βΔ).
#include <fthost/preference.hpp>

#include <cmath>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "0.1", "strength of the pull towards the reference (TRL's beta)"),
    option("desirable_weight", FT_OPT_FLOAT, "1.0", "weight of desirable (label true) examples"),
    option("undesirable_weight", FT_OPT_FLOAT, "1.0", "weight of undesirable (label false) examples"),
    option("loss_type", FT_OPT_STRING, "\"kto\"", "kto, or apo_zero_unpaired (no KL reference point)"),
};

// TRL rounds the recommended weight ranges to two decimals before comparing.
double round2(double x) { return std::round(x * 100.0) / 100.0; }

class Kto {
public:
    static constexpr ft_data_shape data_shape = FT_DATA_FEEDBACK;
    static constexpr uint32_t needs = FT_NEEDS_REFERENCE;

    Kto(const fthost::Host& host, const fthost::Config& cfg)
        : host_(host),
          beta_(cfg.get_float("beta")),
          w_desirable_(cfg.get_float("desirable_weight")),
          w_undesirable_(cfg.get_float("undesirable_weight")),
          use_kl_(cfg.get_string("loss_type") == "kto") {}

    static void validate(const fthost::Config& cfg) {
        const std::string type = cfg.get_string("loss_type");
        if (type != "kto" && type != "apo_zero_unpaired")
            cfg.fail("loss_type", "must be kto or apo_zero_unpaired (got \"" + type + "\")");
        if (cfg.get_float("beta") <= 0) cfg.fail("beta", "must be > 0");
        if (cfg.get_float("desirable_weight") <= 0) cfg.fail("desirable_weight", "must be > 0");
        if (cfg.get_float("undesirable_weight") <= 0) cfg.fail("undesirable_weight", "must be > 0");
    }

    // The KTO paper recommends w_D n_D / (w_U n_U) in [1, 4/3]; TRL warns otherwise.
    void on_dataset(const ft_dataset_info& info) {
        const double n_d = static_cast<double>(info.num_desirable), n_u = static_cast<double>(info.num_undesirable);
        if (n_d == 0 || n_u == 0) {
            host_.log(FT_LOG_WARN, "kto", "the training data has only " + std::string(n_d == 0 ? "undesirable" : "desirable") +
                                              " examples; KTO learns from both kinds");
            return;
        }
        const double d_lo = round2(n_u * w_undesirable_ / n_d), d_hi = round2(n_u * w_undesirable_ / n_d * 1.33);
        const double u_lo = round2(n_d * w_desirable_ / n_u / 1.33), u_hi = round2(n_d * w_desirable_ / n_u);
        const bool d_ok = d_lo <= w_desirable_ && w_desirable_ <= d_hi;
        const bool u_ok = u_lo <= w_undesirable_ && w_undesirable_ <= u_hi;
        if (!d_ok && !u_ok) {
            char buf[512];
            std::snprintf(buf, sizeof buf,
                          "%lld desirable and %lld undesirable examples: desirable_weight * n_desirable / "
                          "(undesirable_weight * n_undesirable) should be in [1, 4/3]; set desirable_weight in "
                          "[%.2f, %.2f] or undesirable_weight in [%.2f, %.2f]",
                          static_cast<long long>(info.num_desirable), static_cast<long long>(info.num_undesirable), d_lo,
                          d_hi, u_lo, u_hi);
            host_.log(FT_LOG_WARN, "kto", buf);
        }
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const at::Tensor mask = fthost::label_mask(batch);
        const auto policy = fthost::sequence_logps(run.token_logprobs(), mask);
        const auto ref = fthost::sequence_logps(run.token_logprobs(fthost::RunModel::reference), mask);
        auto [pi, pi_kl] = fthost::split_pairs(policy.sum);
        auto [ref_y, ref_kl] = fthost::split_pairs(ref.sum);
        const at::Tensor desirable = batch.extra("desirable").to(at::kBool);
        if (desirable.size(0) != pi.size(0))
            throw fthost::Error("'desirable' has " + std::to_string(desirable.size(0)) + " labels for " +
                                std::to_string(pi.size(0)) + " examples");

        at::Tensor z0 = at::zeros({}, pi.options());
        if (use_kl_) z0 = (pi_kl - ref_kl).mean().clamp_min(0).detach();
        const at::Tensor delta = pi - ref_y;
        at::Tensor losses;
        if (use_kl_) {
            losses = at::where(desirable, w_desirable_ * (1 - at::sigmoid(beta_ * (delta - z0))),
                               w_undesirable_ * (1 - at::sigmoid(beta_ * (z0 - delta))));
        } else {
            losses = at::where(desirable, w_desirable_ * (1 - at::sigmoid(beta_ * delta)),
                               w_undesirable_ * at::sigmoid(beta_ * delta));
        }

        report_metrics(run, pi.detach(), (beta_ * delta).detach(), desirable, z0);
        return losses.sum() / fthost::examples_denominator(batch, pi.size(0));
    }

private:
    // TRL's names; means over the micro-batch's desirable / undesirable examples.
    static void report_metrics(const fthost::Run& run, const at::Tensor& pi, const at::Tensor& rewards,
                               const at::Tensor& desirable, const at::Tensor& z0) {
        at::NoGradGuard ng;
        const at::Tensor undesirable = desirable.logical_not();
        run.metric("kl", z0);
        const bool any_d = desirable.any().item<bool>(), any_u = undesirable.any().item<bool>();
        if (any_d) {
            run.metric("rewards/chosen", rewards.masked_select(desirable).mean());
            run.metric("logps/chosen", pi.masked_select(desirable).mean());
        }
        if (any_u) {
            run.metric("rewards/rejected", rewards.masked_select(undesirable).mean());
            run.metric("logps/rejected", pi.masked_select(undesirable).mean());
        }
        if (any_d && any_u)
            run.metric("rewards/margins",
                       rewards.masked_select(desirable).mean() - rewards.masked_select(undesirable).mean());
    }

    fthost::Host host_;
    double beta_, w_desirable_, w_undesirable_;
    bool use_kl_;
};

}  // namespace

FTHOST_OBJECTIVE(kto, Kto, FT_LABELS_COMPLETION, "kto", "0.1.0",
                 "Kahneman-Tversky Optimization on prompt/completion/label (binary feedback)", kOptions);
FTHOST_PLUGINS(kto)
