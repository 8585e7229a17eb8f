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

// Where each rank's prompts start in the step's generation batch: [rank] -> first
// prompt, and the total at the back.
std::vector<int64_t> prompt_offsets(Communicator& comm, size_t mine) {
    std::vector<double> counts(static_cast<size_t>(comm.size()), 0.0);
    counts[static_cast<size_t>(comm.rank())] = static_cast<double>(mine);
    counts = comm.sum(counts, "rollout prompt counts");
    std::vector<int64_t> first{0};
    for (double c : counts) first.push_back(first.back() + static_cast<int64_t>(c));
    return first;
}

// What every completion of the generation batch came to, in its global order, as every
// rank sees it after one sum: each rank fills its own completions' places, the others
// stay 0 (x + 0 is exact, and a NaN score stays NaN).
struct Scored {
    static constexpr size_t kReward = 0, kLost = 1, kLength = 2, kPromptLength = 3, kCut = 4, kFields = 5;
    size_t graders = 0, width = 0, n = 0;
    std::vector<double> v;  // n rows of `width`, then per grader {items, calls}, then {tokens, seconds}
    Scored(size_t n_, size_t graders_)
        : graders(graders_), width(kFields + graders_), n(n_), v(n_ * (kFields + graders_) + 2 * graders_ + 2, 0.0) {}
    double& at(size_t i, size_t f) { return v[i * width + f]; }
    double at(size_t i, size_t f) const { return v[i * width + f]; }
    double& score(size_t i, size_t k) { return at(i, kFields + k); }
    double score(size_t i, size_t k) const { return at(i, kFields + k); }
    double& failure(size_t k, size_t what) { return v[n * width + 2 * k + what]; }  // what: 0 items, 1 calls
    double& generation(size_t what) { return v[n * width + 2 * graders + what]; }   // what: 0 tokens, 1 seconds
};

// Each grader's mean, std and failures over the whole generation batch.
void grader_metrics(const StageConfig& sc, Scored& all, Rollout& r) {
    for (size_t k = 0; k < sc.graders.size(); ++k) {
        std::vector<double> valid;
        for (size_t i = 0; i < all.n; ++i)
            if (!std::isnan(all.score(i, k))) valid.push_back(all.score(i, k));
        r.metrics["rewards/" + sc.graders[k].plugin + "/mean"] = mean_of(valid);
        r.metrics["rewards/" + sc.graders[k].plugin + "/std"] = std_of(valid);
        r.metrics["rewards/" + sc.graders[k].plugin + "/failed"] = all.failure(k, 0);
    }
}

// The failures summed over the ranks; the reason is the last rank's that had one (rank 0
// reports it), this rank's own elsewhere.
void gather_failures(Communicator& comm, const Grades& grades, Scored& all, Rollout& r) {
    bool any = false;
    r.failures = grades.failures;
    for (size_t k = 0; k < r.failures.size(); ++k) {
        r.failures[k].items = static_cast<int64_t>(all.failure(k, 0));
        r.failures[k].calls = static_cast<int64_t>(all.failure(k, 1));
        any = any || r.failures[k].calls > 0;
    }
    if (!any || !comm.connected()) return;
    std::vector<std::string> mine;
    for (const auto& f : grades.failures) mine.push_back(f.reason);
    const auto ranks = comm.gather_to_leader(mine, "gather of grader failures");
    for (size_t q = 0; q < ranks.size(); q += grades.failures.size())
        for (size_t k = 0; k < r.failures.size(); ++k)
            if (!ranks[q + k].empty()) r.failures[k].reason = ranks[q + k];
}

}  // namespace

Rollout make_rollout(ModelSession& model, const std::vector<const Example*>& prompts, const StageConfig& sc,
                     const TextCodec& codec, uint64_t seed, Communicator& comm) {
    // Sampling and the stored log-probs under the loss's precision: at bf16 the ratio
    // to the old policy is 1 until the weights move.
    AutocastScope autocast(model.device(), sc.bf16);
    const GenerationConfig& gc = sc.generation;
    const size_t G = static_cast<size_t>(gc.num_generations);
    const std::vector<int64_t> offsets = prompt_offsets(comm, prompts.size());
    const size_t first = static_cast<size_t>(offsets[static_cast<size_t>(comm.rank())]) * G;  // this rank's first completion
    std::vector<std::vector<int64_t>> inputs;
    std::vector<const std::vector<Field>*> fields;  // each prompt's model inputs (its image), G times
    for (const Example* p : prompts)
        for (size_t g = 0; g < G; ++g) inputs.push_back(p->prompt_ids), fields.push_back(&p->fields);
    SamplingOptions o;
    o.max_new_tokens = gc.max_new_tokens;
    o.temperature = gc.temperature;
    o.top_k = gc.top_k;
    o.top_p = gc.top_p;
    o.seed = seed;
    o.first_row = static_cast<int64_t>(first);
    o.cuda_graphs = sc.cuda_graphs;
    GenerationStats stats;
    const auto gens = generate(model, inputs, o, static_cast<int64_t>(inputs.size()), codec, &stats, fields);

    // Rewards: Σ_k w_k r_k with a NaN score (not applicable) counting 0 (TRL's nansum).
    std::vector<GradeInput> items;
    for (size_t i = 0; i < gens.size(); ++i) {
        const Example& p = *prompts[i / G];
        items.push_back({p.prompt_text, gens[i].text, p.reference, p.row_json});
    }
    const Grades grades = grade_all(sc.graders, items);
    Scored all(static_cast<size_t>(offsets.back()) * G, sc.graders.size());
    for (size_t i = 0; i < gens.size(); ++i) {
        const size_t j = first + i;
        for (size_t k = 0; k < sc.graders.size(); ++k) {
            all.score(j, k) = grades.scores[k][i];
            if (!std::isnan(grades.scores[k][i])) all.at(j, Scored::kReward) += sc.graders[k].weight * grades.scores[k][i];
        }
        all.at(j, Scored::kLost) = grades.lost_any(i);
        all.at(j, Scored::kLength) = static_cast<double>(gens[i].tokens.size());
        all.at(j, Scored::kPromptLength) = static_cast<double>(prompts[i / G]->prompt_ids.size());
        all.at(j, Scored::kCut) = gens[i].finish_reason == "length";
    }
    for (size_t k = 0; k < sc.graders.size(); ++k)
        all.failure(k, 0) = static_cast<double>(grades.failures[k].items),
        all.failure(k, 1) = static_cast<double>(grades.failures[k].calls);
    all.generation(0) = static_cast<double>(stats.tokens);
    all.generation(1) = stats.seconds;
    all.v = comm.sum(all.v, "rollout rewards");

    Rollout r;
    r.graded = static_cast<int64_t>(all.n);
    gather_failures(comm, grades, all, r);
    grader_metrics(sc, all, r);
    // The groups trained on: those whose every reward is known.
    std::vector<size_t> kept;
    for (size_t g = 0; g < all.n; g += G) {
        bool lost = false;
        for (size_t i = g; i < g + G; ++i) lost = lost || all.at(i, Scored::kLost) != 0;
        for (size_t i = g; i < g + G && !lost; ++i) kept.push_back(i);
    }
    r.dropped = static_cast<int64_t>(all.n - kept.size());
    r.metrics["rewards/dropped"] = static_cast<double>(r.dropped);
    std::vector<double> rewards;
    double length = 0, truncated = 0;
    for (size_t i : kept) {
        rewards.push_back(all.at(i, Scored::kReward));
        const bool cut = all.at(i, Scored::kCut) != 0;
        length += all.at(i, Scored::kLength);
        truncated += cut;
        if (!(cut && gc.mask_truncated_completions)) r.num_items += static_cast<int64_t>(all.at(i, Scored::kLength));
        r.num_tokens += static_cast<int64_t>(all.at(i, Scored::kPromptLength) + all.at(i, Scored::kLength));
    }
    const size_t K = kept.size();
    r.num_examples = static_cast<int64_t>(K);
    double zero_std = 0;
    for (size_t g = 0; g < K; g += G)
        zero_std += std_of(std::vector<double>(rewards.begin() + g, rewards.begin() + g + G)) == 0.0;
    r.metrics["reward"] = mean_of(rewards);
    r.metrics["reward_std"] = std_of(rewards);
    r.metrics["frac_reward_zero_std"] = K ? zero_std / static_cast<double>(K / G) : std::nan("");
    r.metrics["completions/mean_length"] = K ? length / static_cast<double>(K) : std::nan("");
    r.metrics["completions/clipped_ratio"] = K ? truncated / static_cast<double>(K) : std::nan("");
    // Ranks generate side by side: the batch's tokens over a rank's mean time.
    const double seconds = all.generation(1) / static_cast<double>(comm.size());
    r.metrics["generation/tokens_per_s"] = seconds > 0 ? all.generation(0) / seconds : 0.0;
    r.metrics["generation/seconds"] = seconds;

    // This rank's rows: prompt + completion, labels on the completion (none when
    // truncated and masked), completion_mask on the completion; each with its place
    // among the kept rows (the objective's row_index into the rewards).
    const int64_t rows_per_micro = sc.train.batch_size;
    std::vector<int64_t> row_index;
    std::vector<int64_t> kept_by_rank(static_cast<size_t>(comm.size()), 0);
    int rank = 0;  // whose completion kept[q] is: kept is in the global order, so it only grows
    for (size_t q = 0; q < K; ++q) {
        const size_t i = kept[q];
        while (static_cast<size_t>(offsets[static_cast<size_t>(rank) + 1]) * G <= i) ++rank;
        ++kept_by_rank[static_cast<size_t>(rank)];
        if (i < first || i >= first + gens.size()) continue;
        const Generation& gen = gens[i - first];
        const Example& p = *prompts[(i - first) / G];
        const bool learn = !(gen.finish_reason == "length" && gc.mask_truncated_completions);
        Example ex;
        ex.ids = p.prompt_ids;
        ex.labels.assign(p.prompt_ids.size(), -100);
        ex.completion_mask.assign(p.prompt_ids.size(), 0);
        for (int64_t id : gen.tokens) {
            ex.ids.push_back(id);
            ex.labels.push_back(learn ? id : -100);
            ex.completion_mask.push_back(1);
        }
        ex.prompt_ids = p.prompt_ids;
        ex.prompt_length = static_cast<int64_t>(p.prompt_ids.size());
        ex.fields = p.fields;
        r.rows.push_back(std::move(ex));
        row_index.push_back(static_cast<int64_t>(q));
    }
    for (int q = 0; q < comm.size(); ++q) {
        const int64_t micro = (kept_by_rank[static_cast<size_t>(q)] + rows_per_micro - 1) / rows_per_micro;
        if (q < comm.rank()) r.first_micro += micro;
        r.global_micro += micro;
    }

    // The micro-batches, each with the whole batch's rewards and its rows' places in it.
    const at::Tensor all_rewards = at::tensor(rewards, at::kDouble);
    for (size_t begin = 0; begin < r.rows.size(); begin += static_cast<size_t>(rows_per_micro)) {
        const size_t end = std::min(r.rows.size(), begin + static_cast<size_t>(rows_per_micro));
        std::vector<std::vector<const Example*>> batch_rows;
        for (size_t i = begin; i < end; ++i) batch_rows.push_back({&r.rows[i]});
        HostBatch b = collate(batch_rows);
        b.num_examples = static_cast<int64_t>(end - begin);
        const std::vector<int64_t> places(row_index.begin() + static_cast<std::ptrdiff_t>(begin),
                                          row_index.begin() + static_cast<std::ptrdiff_t>(end));
        b.extras.insert(b.extras.end(),
                        {{"rewards", all_rewards},
                         {"row_index", at::tensor(places, at::kLong)},
                         {"num_generations", at::tensor({static_cast<int64_t>(G)}, at::kLong)},
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
