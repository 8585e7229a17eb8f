// orpo — Odds Ratio Preference Optimization, as TRL 0.28's ORPOTrainer computes it: SFT
// and preference in one pass, with no reference model.
//
// A batch holds B pairs (rows [0, B) chosen, [B, 2B) rejected). The labels cover every
// token after the first (prompt included), because ORPO's NLL term is the mean
// cross-entropy over the whole chosen sequences; the odds ratio uses the completion
// tokens only (extras "completion_mask"). With p̄ = length-averaged completion log-prob,
//   LO = [p̄_w − log(1 − e^{p̄_w})] − [p̄_l − log(1 − e^{p̄_l})]
//   loss = NLL(chosen) − λ · mean_pairs log σ(LO),    λ = beta.
// Metrics: rewards β p̄, log_odds_ratio = mean log σ(LO), log_odds_chosen = mean LO,
// nll_loss.
//
// TRL's odds_ratio_loss narrows p̄ to float32 (`.float()`, whatever the logits' dtype),
// so the odds ratio, the rewards and their metrics are float32 there. The loss here keeps
// the inputs' precision when it is higher (float64 in the parity test, whose
// finite-difference gradient check needs it; the host's log-probs are float32, where the
// two coincide), and the odds-ratio metrics are recomputed in float32 in TRL's order:
// near a tie (LO ~ 0) float32 rounding is most of log_odds_chosen and rewards/margins,
// and can even turn a win into a tie in rewards/accuracies.
#include <fthost/preference.hpp>

#include <cmath>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "0.1", "weight λ of the odds-ratio term against the NLL (TRL's beta)"),
};

// log(1 − e^x) for x < 0, accurate on both sides of −ln 2.
at::Tensor log1mexp(const at::Tensor& x) {
    return at::where(x < -std::log(2.0), at::log1p(-at::exp(x)), at::log(-at::expm1(x)));
}

// LO per pair, in the order TRL writes it: (p̄_w − p̄_l) − (log1mexp(p̄_w) − log1mexp(p̄_l)).
at::Tensor log_odds(const at::Tensor& p_w, const at::Tensor& p_l) {
    return (p_w - p_l) - (log1mexp(p_w) - log1mexp(p_l));
}

class Orpo {
public:
    static constexpr ft_data_shape data_shape = FT_DATA_PAIRS;

    Orpo(const fthost::Host&, const fthost::Config& cfg) : beta_(cfg.get_float("beta")) {}

    static void validate(const fthost::Config& cfg) {
        if (cfg.get_float("beta") <= 0) cfg.fail("beta", "must be > 0");
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        at::Tensor tokens = run.token_logprobs();
        // At least float32 (the loss never goes below TRL's precision), float64 kept.
        tokens = tokens.to(at::promote_types(tokens.scalar_type(), at::kFloat));
        const auto completion = fthost::sequence_logps(tokens, batch.extra("completion_mask").ne(0));
        auto [p_w, p_l] = fthost::split_pairs(completion.mean());
        const at::Tensor ratio = at::log_sigmoid(log_odds(p_w, p_l));

        auto [tok_w, tok_l] = fthost::split_pairs(tokens);
        auto [mask_w, mask_l] = fthost::split_pairs(fthost::label_mask(batch));
        const at::Tensor nll = -(tok_w * mask_w).sum() / mask_w.sum().clamp_min(1);

        const int64_t pairs = p_w.size(0);
        const at::Tensor loss = (nll - beta_ * ratio.mean()) * (static_cast<double>(pairs) /
                                                                 fthost::examples_denominator(batch, pairs));
        report(run, p_w.detach(), p_l.detach(), nll.detach());
        return loss;
    }

private:
    // TRL's metrics from its float32 p̄: rewards β p̄ and the odds ratio in float32,
    // logps/* and nll_loss in the inputs' precision (TRL logs those unnarrowed).
    void report(const fthost::Run& run, const at::Tensor& p_w, const at::Tensor& p_l, const at::Tensor& nll) const {
        at::NoGradGuard ng;
        const at::Tensor w32 = p_w.to(at::kFloat), l32 = p_l.to(at::kFloat);
        const at::Tensor lo32 = log_odds(w32, l32);
        fthost::report_pair_metrics(run, beta_ * w32, beta_ * l32, p_w, p_l);
        run.metric("nll_loss", nll);
        run.metric("log_odds_ratio", at::log_sigmoid(lo32).mean());
        run.metric("log_odds_chosen", lo32.mean());
    }

    double beta_;
};

}  // namespace

FTHOST_OBJECTIVE(orpo, Orpo, FT_LABELS_ALL, "orpo", "0.1.0",
                 "Odds Ratio Preference Optimization: NLL on chosen plus an odds-ratio term, no reference model",
                 kOptions);
FTHOST_PLUGINS(orpo)
