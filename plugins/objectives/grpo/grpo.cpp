// grpo (also exported as rft) — Group Relative Policy Optimization, as TRL 0.28's
// GRPOTrainer computes it. The host samples G completions per prompt, grades them and
// hands over prompt + completion rows with the generation batch's rewards
// (fthost.h, FT_DATA_COMPLETIONS). Here:
//   A_i = R_i − mean_group(R), divided by (std + 1e−4) with the unbiased std of the
//         group (scale_rewards "group"), of the whole batch ("batch"), or not ("none");
//   ℓ_t = log softmax(z_t / τ)[y_t] with τ the sampling temperature;
//   ρ_t = exp(ℓ_t − ℓ_t^old) per token, or one ratio per sequence (GSPO:
//         importance_sampling_level "sequence"); ℓ^old = sg(ℓ) when the batch is fresh;
//   loss_t = −min(ρ A, clip(ρ, 1−ε, 1+ε_high) A) + β (e^{ref−ℓ} − (ref−ℓ) − 1), where
//         delta > 0 caps ρ in the first term (two-sided clipping) and in the clip metrics;
// aggregated as loss_type grpo (mean of per-sequence means), bnpo (token mean of the
// micro-batch), dr_grpo (Σ / (rows · max_new_tokens)) or dapo (Σ / tokens of the
// generation batch; TRL's default). `rft` is the same objective under the name managed
// reinforcement fine-tuning services use: one algorithm, two names (docs/OBJECTIVES.md).
#include <fthost/preference.hpp>

#include <set>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "0.0", "weight of the k3 KL to the reference (0: no reference pass)"),
    option("epsilon", FT_OPT_FLOAT, "0.2", "lower clip range of the importance ratio"),
    option("epsilon_high", FT_OPT_FLOAT, "0.0", "upper clip range (0: the same as epsilon)"),
    option("delta", FT_OPT_FLOAT, "0.0", "upper bound of the unclipped ratio (two-sided clipping); 0: off"),
    option("loss_type", FT_OPT_STRING, "\"dapo\"", "dapo, grpo, bnpo or dr_grpo (how per-token losses are averaged)"),
    option("scale_rewards", FT_OPT_STRING, "\"group\"", "divide advantages by the std of the group, the batch, or none"),
    option("importance_sampling_level", FT_OPT_STRING, "\"token\"", "token (GRPO) or sequence (GSPO)"),
};

const std::set<std::string> kLossTypes = {"dapo", "grpo", "bnpo", "dr_grpo"};

class Grpo {
public:
    static constexpr ft_data_shape data_shape = FT_DATA_COMPLETIONS;
    static constexpr uint32_t needs = FT_NEEDS_REFERENCE;

    Grpo(const fthost::Host&, const fthost::Config& cfg)
        : beta_(cfg.get_float("beta")),
          eps_low_(cfg.get_float("epsilon")),
          eps_high_(cfg.get_float("epsilon_high") > 0 ? cfg.get_float("epsilon_high") : cfg.get_float("epsilon")),
          delta_(cfg.get_float("delta")),
          loss_type_(cfg.get_string("loss_type")),
          scale_(cfg.get_string("scale_rewards")),
          sequence_level_(cfg.get_string("importance_sampling_level") == "sequence") {}

    static void validate(const fthost::Config& cfg) {
        if (!kLossTypes.count(cfg.get_string("loss_type")))
            cfg.fail("loss_type", "must be dapo, grpo, bnpo or dr_grpo (got \"" + cfg.get_string("loss_type") + "\")");
        const std::string s = cfg.get_string("scale_rewards");
        if (s != "group" && s != "batch" && s != "none") cfg.fail("scale_rewards", "must be group, batch or none");
        const std::string l = cfg.get_string("importance_sampling_level");
        if (l != "token" && l != "sequence") cfg.fail("importance_sampling_level", "must be token or sequence");
        if (cfg.get_float("beta") < 0) cfg.fail("beta", "must be >= 0");
        if (cfg.get_float("epsilon") <= 0 || cfg.get_float("epsilon") >= 1) cfg.fail("epsilon", "must be in (0, 1)");
        if (cfg.get_float("epsilon_high") < 0) cfg.fail("epsilon_high", "must be >= 0");
        if (cfg.get_float("delta") < 0) cfg.fail("delta", "must be >= 0 (0 = off)");
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const at::Tensor mask_b = fthost::label_mask(batch);
        const double tau = batch.extra("sampling_temperature").item<double>();
        const at::Tensor lp = run.token_logprobs(fthost::RunModel::policy, tau);
        const at::Tensor mask = mask_b.to(lp.scalar_type());
        const at::Tensor old = batch.extras.count("old_logprobs") ? batch.extra("old_logprobs").to(lp.scalar_type()) : lp.detach();
        const at::Tensor adv = advantages(batch).to(lp.scalar_type()).unsqueeze(1);  // [B, 1]

        at::Tensor log_w = lp - old;
        if (sequence_level_) log_w = ((log_w * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).unsqueeze(-1);
        at::Tensor coef_1 = at::exp(log_w);
        const at::Tensor coef_2 = at::clamp(coef_1, 1 - eps_low_, 1 + eps_high_);
        // The clip metrics read coef_1 after this cap, as TRL's do: with delta ≤ 1 + ε_high
        // no token counts as high-clipped.
        if (delta_ > 0) coef_1 = at::clamp_max(coef_1, delta_);
        at::Tensor per_token = -at::min(coef_1 * adv, coef_2 * adv);
        at::Tensor kl;
        if (beta_ != 0) {
            at::Tensor ref;
            {
                at::NoGradGuard ng;
                ref = run.token_logprobs(fthost::RunModel::reference, tau);
            }
            const at::Tensor d = ref - lp;
            kl = at::exp(d) - d - 1;
            per_token = per_token + beta_ * kl;
        }

        const int64_t rows = lp.size(0);
        const double examples = fthost::examples_denominator(batch, rows);
        at::Tensor loss;
        if (loss_type_ == "grpo") {
            loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)).sum() / examples;
        } else if (loss_type_ == "bnpo") {
            loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0) * (static_cast<double>(rows) / examples);
        } else if (loss_type_ == "dr_grpo") {
            loss = (per_token * mask).sum() / (examples * batch.extra("max_new_tokens").item<double>());
        } else {
            const double items = batch.num_items_in_batch > 0 ? static_cast<double>(batch.num_items_in_batch)
                                                              : std::max(1.0, mask.sum().item<double>());
            loss = (per_token * mask).sum() / items;
        }
        report(run, mask, coef_1, adv, kl);
        return loss;
    }

private:
    // TRL's sum_then_normalize over the whole generation batch; this micro-batch's rows.
    at::Tensor advantages(const fthost::BatchView& batch) const {
        const at::Tensor rewards = batch.extra("rewards").to(at::kDouble);
        const int64_t g = batch.extra("num_generations").item<int64_t>();
        if (g < 1 || rewards.size(0) % g != 0)
            throw fthost::Error("the generation batch (" + std::to_string(rewards.size(0)) +
                                " completions) is not a whole number of groups of " + std::to_string(g));
        const at::Tensor grouped = rewards.view({-1, g});
        const at::Tensor mean = grouped.mean(1).repeat_interleave(g);
        at::Tensor std;
        if (scale_ == "batch") std = rewards.numel() > 1 ? rewards.std().expand_as(rewards) : at::zeros_like(rewards);
        else std = g > 1 ? grouped.std(1).repeat_interleave(g) : at::zeros_like(rewards);
        at::Tensor a = rewards - mean;
        if (scale_ != "none") a = a / (std + 1e-4);
        return a.index_select(0, batch.extra("row_index").to(at::kLong).to(a.device()));
    }

    // TRL's names: clip_ratio/{low,high,region}_mean (of the ratio after the delta cap), kl,
    // advantages/*.
    void report(const fthost::Run& run, const at::Tensor& mask, const at::Tensor& ratio, const at::Tensor& adv,
                const at::Tensor& kl) const {
        at::NoGradGuard ng;
        const at::Tensor count = mask.sum().clamp_min(1.0);
        auto masked_mean = [&](const at::Tensor& x) {
            return x.size(1) == 1 ? x.to(mask.scalar_type()).mean() : (x.to(mask.scalar_type()) * mask).sum() / count;
        };
        const at::Tensor r = ratio.detach();
        const at::Tensor low = (r < 1 - eps_low_) & (adv < 0), high = (r > 1 + eps_high_) & (adv > 0);
        run.metric("clip_ratio/low_mean", masked_mean(low));
        run.metric("clip_ratio/high_mean", masked_mean(high));
        run.metric("clip_ratio/region_mean", masked_mean(low | high));
        if (kl.defined()) run.metric("kl", masked_mean(kl.detach()));
        run.metric("advantages/mean", adv.mean());
        run.metric("advantages/std", adv.numel() > 1 ? adv.std() : at::zeros({}, adv.options()));
    }

    double beta_, eps_low_, eps_high_, delta_;
    std::string loss_type_, scale_;
    bool sequence_level_;
};

}  // namespace

FTHOST_OBJECTIVE(grpo, Grpo, FT_LABELS_COMPLETION, "grpo", "0.1.0",
                 "GRPO: group-relative policy optimisation on sampled, graded completions", kOptions);
FTHOST_OBJECTIVE(rft, Grpo, FT_LABELS_COMPLETION, "rft", "0.1.0",
                 "reinforcement fine-tuning against graders (the grpo objective under its service name)", kOptions);
FTHOST_PLUGINS(grpo, rft)
