// preference.hpp — the pieces every preference objective shares: per-sequence log-prob
// sums and averages from the host's per-token log-probs, the chosen/rejected halves of
// a FT_DATA_PAIRS batch, TRL's reward metrics, and the effective-batch denominator.
// Header-only, on top of torch.hpp; the objectives in plugins/objectives/ use it and so
// can third-party ones.
#pragma once

#include <fthost/torch.hpp>

#include <string>
#include <utility>

namespace fthost {
inline namespace v1 {

// Σ_t m_t ℓ_t and Σ_t m_t per row of a [R, T] per-token log-prob tensor (the host
// already put 0 where the label is ignored; `mask` selects a subset, e.g. completion
// tokens when the labels cover the prompt too).
struct SequenceLogps {
    at::Tensor sum;    // [R]
    at::Tensor count;  // [R], same dtype as sum
    // Length-averaged log-prob; a row without tokens averages to 0 (never NaN).
    at::Tensor mean() const { return sum / count.clamp_min(1); }
};

inline SequenceLogps sequence_logps(const at::Tensor& token_logps, const at::Tensor& mask) {
    const at::Tensor m = mask.to(token_logps.scalar_type());
    return {(token_logps * m).sum(-1), m.sum(-1)};
}

// The labelled positions of a batch (labels != -100), as a 0/1 mask [R, T].
inline at::Tensor label_mask(const BatchView& batch) { return batch.labels.ne(-100); }

// Rows [0, B) and [B, 2B) of a FT_DATA_PAIRS tensor: (chosen, rejected).
inline std::pair<at::Tensor, at::Tensor> split_pairs(const at::Tensor& rows) {
    const int64_t two_b = rows.size(0);
    if (two_b % 2 != 0) throw Error("a pair batch needs an even number of rows, got " + std::to_string(two_b));
    return {rows.narrow(0, 0, two_b / 2), rows.narrow(0, two_b / 2, two_b / 2)};
}

// How many examples the loss of this micro-batch is averaged over: those of the whole
// effective batch when the host says (so accumulation sums to one mean), else the
// micro-batch's own.
inline double examples_denominator(const BatchView& batch, int64_t local_examples) {
    return static_cast<double>(batch.num_examples_in_batch > 0 ? batch.num_examples_in_batch : local_examples);
}

// TRL's metric names for pair objectives: rewards/{chosen,rejected,accuracies,margins}
// and logps/{chosen,rejected}, as means over the pairs of the micro-batch.
inline void report_pair_metrics(const Run& run, const at::Tensor& chosen_rewards, const at::Tensor& rejected_rewards,
                                const at::Tensor& chosen_logps, const at::Tensor& rejected_logps) {
    at::NoGradGuard ng;
    run.metric("rewards/chosen", chosen_rewards.mean());
    run.metric("rewards/rejected", rejected_rewards.mean());
    run.metric("rewards/accuracies", chosen_rewards.gt(rejected_rewards).to(at::kDouble).mean());
    run.metric("rewards/margins", (chosen_rewards - rejected_rewards).mean());
    run.metric("logps/chosen", chosen_logps.mean());
    run.metric("logps/rejected", rejected_logps.mean());
}

}  // namespace v1
}  // namespace fthost
