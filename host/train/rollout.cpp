#include "train/rollout.hpp"

#include "eval/grading.hpp"
#include "generate/generator.hpp"
#include "model/autocast.hpp"

#include <fthost/torch.hpp>

#include <cmath>

namespace fthost::host {
namespace {

double mean_of(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? std::nan("") : s / static_cast<double>(v.size());
}

double std_of(const std::vector<double>& v) {  // unbiased, as torch.std
    if (v.size() < 2) return 0.0;
    const double m = mean_of(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
}

// The policy's temperature-scaled per-token log-probs of a batch's labels, [B, T] float.
at::Tensor sampling_logprobs(ModelSession& model, HostBatch& b, double temperature) {
    at::NoGradGuard ng;
    ft_batch fb = as_ft_batch(b, b.num_labels);
    return model.token_logprobs(fb, false, temperature).to(at::kFloat);
}

}  // namespace

Rollout make_rollout(ModelSession& model, const std::vector<const Example*>& prompts, const StageConfig& sc,
                     const TextCodec& codec, uint64_t seed) {
    // Sampling and the stored log-probs under the loss's precision: at bf16 the ratio
    // to the old policy is 1 until the weights move.
    AutocastScope autocast(model.device(), sc.bf16);
    const GenerationConfig& gc = sc.generation;
    const int64_t G = gc.num_generations;
    std::vector<std::vector<int64_t>> inputs;
    std::vector<const std::vector<Field>*> fields;  // each prompt's model inputs (its image), G times
    for (const Example* p : prompts)
        for (int64_t g = 0; g < G; ++g) inputs.push_back(p->prompt_ids), fields.push_back(&p->fields);
    SamplingOptions o;
    o.max_new_tokens = gc.max_new_tokens;
    o.temperature = gc.temperature;
    o.top_k = gc.top_k;
    o.top_p = gc.top_p;
    o.seed = seed;
    o.cuda_graphs = sc.cuda_graphs;
    GenerationStats stats;
    const auto gens = generate(model, inputs, o, static_cast<int64_t>(inputs.size()), codec, &stats, fields);

    // Rewards: Σ_k w_k r_k with a NaN score (not applicable) counting 0 (TRL's nansum).
    std::vector<GradeInput> items;
    for (size_t i = 0; i < gens.size(); ++i) {
        const Example& p = *prompts[i / static_cast<size_t>(G)];
        items.push_back({p.prompt_text, gens[i].text, p.reference, p.row_json});
    }
    const Grades grades = grade_all(sc.graders, items);
    const size_t N = gens.size();
    Rollout r;
    r.graded = static_cast<int64_t>(N);
    r.failures = grades.failures;
    std::vector<double> summed(N, 0.0);  // every completion's reward
    for (size_t k = 0; k < sc.graders.size(); ++k) {
        std::vector<double> valid;
        for (size_t i = 0; i < N; ++i)
            if (!std::isnan(grades.scores[k][i])) {
                summed[i] += sc.graders[k].weight * grades.scores[k][i];
                valid.push_back(grades.scores[k][i]);
            }
        r.metrics["rewards/" + sc.graders[k].plugin + "/mean"] = mean_of(valid);
        r.metrics["rewards/" + sc.graders[k].plugin + "/std"] = std_of(valid);
        r.metrics["rewards/" + sc.graders[k].plugin + "/failed"] = static_cast<double>(grades.failures[k].items);
    }
    // The groups trained on: those whose every reward is known.
    std::vector<size_t> kept;
    for (size_t g = 0; g < N; g += static_cast<size_t>(G)) {
        bool lost = false;
        for (size_t i = g; i < g + static_cast<size_t>(G); ++i) lost = lost || grades.lost_any(i);
        for (size_t i = g; i < g + static_cast<size_t>(G) && !lost; ++i) kept.push_back(i);
    }
    r.dropped = static_cast<int64_t>(N - kept.size());
    r.metrics["rewards/dropped"] = static_cast<double>(r.dropped);
    std::vector<double> rewards;
    for (size_t i : kept) rewards.push_back(summed[i]);

    // Rows: prompt + completion, labels on the completion (none when truncated and
    // masked), completion_mask on the completion.
    double length = 0, truncated = 0;
    for (size_t i : kept) {
        const Example& p = *prompts[i / static_cast<size_t>(G)];
        const bool cut = gens[i].finish_reason == "length";
        const bool learn = !(cut && gc.mask_truncated_completions);
        Example ex;
        ex.ids = p.prompt_ids;
        ex.labels.assign(p.prompt_ids.size(), -100);
        ex.completion_mask.assign(p.prompt_ids.size(), 0);
        for (int64_t id : gens[i].tokens) {
            ex.ids.push_back(id);
            ex.labels.push_back(learn ? id : -100);
            ex.completion_mask.push_back(1);
            r.num_items += learn;
        }
        ex.prompt_ids = p.prompt_ids;
        ex.prompt_length = static_cast<int64_t>(p.prompt_ids.size());
        ex.fields = p.fields;
        r.rows.push_back(std::move(ex));
        length += static_cast<double>(gens[i].tokens.size());
        truncated += cut;
    }
    const size_t K = kept.size();
    double zero_std = 0;
    for (size_t g = 0; g < K; g += static_cast<size_t>(G))
        zero_std += std_of(std::vector<double>(rewards.begin() + g, rewards.begin() + g + G)) == 0.0;
    r.metrics["reward"] = mean_of(rewards);
    r.metrics["reward_std"] = std_of(rewards);
    r.metrics["frac_reward_zero_std"] = K ? zero_std / static_cast<double>(K / static_cast<size_t>(G)) : std::nan("");
    r.metrics["completions/mean_length"] = K ? length / static_cast<double>(K) : std::nan("");
    r.metrics["completions/clipped_ratio"] = K ? truncated / static_cast<double>(K) : std::nan("");
    r.metrics["generation/tokens_per_s"] = stats.seconds > 0 ? static_cast<double>(stats.tokens) / stats.seconds : 0.0;
    r.metrics["generation/seconds"] = stats.seconds;

    // The micro-batches, each with the whole batch's rewards and its rows' indices.
    const at::Tensor all_rewards = at::tensor(rewards, at::kDouble);
    const int64_t rows = sc.train.batch_size;
    for (size_t first = 0; first < K; first += static_cast<size_t>(rows)) {
        const size_t last = std::min(K, first + static_cast<size_t>(rows));
        std::vector<std::vector<const Example*>> batch_rows;
        for (size_t i = first; i < last; ++i) batch_rows.push_back({&r.rows[i]});
        HostBatch b = collate(batch_rows);
        b.num_examples = static_cast<int64_t>(last - first);
        b.extras.insert(b.extras.end(),
                        {{"rewards", all_rewards},
                         {"row_index", at::arange(static_cast<int64_t>(first), static_cast<int64_t>(last), at::kLong)},
                         {"num_generations", at::tensor({G}, at::kLong)},
                         {"max_new_tokens", at::tensor({gc.max_new_tokens}, at::kLong)},
                         {"sampling_temperature", at::tensor({gc.temperature}, at::kDouble)}});
        b = to_device(std::move(b), model.device());
        // A batch trained on for several steps keeps the log-probs it was sampled with.
        if (gc.num_iterations > 1) b.extras.emplace_back("old_logprobs", sampling_logprobs(model, b, gc.temperature));
        r.micro.push_back(std::move(b));
    }
    return r;
}

}  // namespace fthost::host
