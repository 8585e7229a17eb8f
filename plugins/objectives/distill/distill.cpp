// distill — knowledge distillation: the student (the model being trained) learns the
// next-token distribution of the stage's teacher at every completion token, with TRL's
// generalised Jensen-Shannon divergence (GKD's generalized_jsd_loss):
//   P_S = softmax(s/τ), P_T = softmax(t/τ)
//   beta = 0: forward KL(P_T ‖ P_S);  beta = 1: reverse KL(P_S ‖ P_T);
//   else with M = (1−β) P_S + β P_T:  β KL(P_T ‖ M) + (1−β) KL(P_S ‖ M)
// summed over the vocabulary and averaged over the labelled tokens of the effective
// batch. The teacher runs frozen in the same process (the stage's `teacher`), and its
// vocabulary must match the student's. Metric: divergence (per-token, this micro-batch).
#include <fthost/torch.hpp>

#include <cmath>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("beta", FT_OPT_FLOAT, "0.5", "0 = forward KL, 1 = reverse KL, between = generalised JSD (TRL GKD's beta)"),
    option("temperature", FT_OPT_FLOAT, "1.0", "softmax temperature applied to student and teacher logits"),
};

// Σ_v exp(log_p) (log_p − log_q) per row: KL(p ‖ q) from log-probabilities.
at::Tensor kl(const at::Tensor& log_p, const at::Tensor& log_q) { return (log_p.exp() * (log_p - log_q)).sum(-1); }

class Distill {
public:
    static constexpr uint32_t needs = FT_NEEDS_TEACHER;

    Distill(const fthost::Host&, const fthost::Config& cfg)
        : beta_(cfg.get_float("beta")), temperature_(cfg.get_float("temperature")) {}

    static void validate(const fthost::Config& cfg) {
        const double b = cfg.get_float("beta");
        if (b < 0 || b > 1) cfg.fail("beta", "must be in [0, 1]");
        if (cfg.get_float("temperature") <= 0) cfg.fail("temperature", "must be > 0");
    }

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const at::Tensor student = run.label_logits();
        const at::Tensor teacher = run.label_logits(fthost::RunModel::teacher);
        if (student.size(-1) != teacher.size(-1))
            throw fthost::Error("the teacher's vocabulary has " + std::to_string(teacher.size(-1)) +
                                    " entries, the student's " + std::to_string(student.size(-1)) +
                                    "; distillation needs the same tokenizer and vocabulary",
                                FT_ERR_CONFIG);
        const at::Tensor log_s = at::log_softmax(student / temperature_, -1);
        const at::Tensor log_t = at::log_softmax(teacher.to(student.scalar_type()) / temperature_, -1);
        at::Tensor per_token;
        if (beta_ == 0) {
            per_token = kl(log_t, log_s);
        } else if (beta_ == 1) {
            per_token = kl(log_s, log_t);
        } else {
            const at::Tensor log_m =
                at::logsumexp(at::stack({log_s + std::log(1 - beta_), log_t + std::log(beta_)}), 0);
            per_token = beta_ * kl(log_t, log_m) + (1 - beta_) * kl(log_s, log_m);
        }
        const int64_t n = per_token.size(0);
        run.metric("divergence", (per_token.detach().sum() / std::max<int64_t>(n, 1)).item<double>());
        const double denom = static_cast<double>(batch.num_items_in_batch > 0 ? batch.num_items_in_batch : std::max<int64_t>(n, 1));
        return per_token.sum() / denom;
    }

private:
    double beta_, temperature_;
};

}  // namespace

FTHOST_OBJECTIVE(distill, Distill, FT_LABELS_COMPLETION, "distill", "0.1.0",
                 "knowledge distillation from the stage's teacher (forward/reverse KL, generalised JSD)", kOptions);
FTHOST_PLUGINS(distill)
