#include "eval/held_out.hpp"

#include "eval/grading.hpp"
#include "eval/task_eval.hpp"
#include "generate/generator.hpp"
#include "model/autocast.hpp"

#include <fthost/torch.hpp>

#include <cmath>

namespace fthost::host {

// Eval batches in the objective's shape, unshuffled and unpacked.
std::vector<HostBatch> eval_batches(const std::vector<Example>& eval, int64_t batch_size, ft_data_shape shape,
                                    at::Device device) {
    std::vector<HostBatch> out;
    for (size_t i = 0; i < eval.size(); i += static_cast<size_t>(batch_size)) {
        std::vector<const Example*> examples;
        for (size_t j = i; j < std::min(eval.size(), i + static_cast<size_t>(batch_size)); ++j) examples.push_back(&eval[j]);
        out.push_back(to_device(collate_shaped(examples, shape), device));
    }
    return out;
}

// Held-out preference accuracy: the share of pairs whose chosen completion has a
// higher summed log-prob than the rejected one under `model`.
double preference_accuracy(ModelSession& model, const std::vector<Example>& eval, int64_t batch_size, at::Device device,
                           Communicator* comm) {
    at::NoGradGuard ng;
    model.set_training(false);
    int64_t right = 0, total = 0;
    const bool sharded = comm && comm->connected();
    std::vector<HostBatch> batches = eval_batches(eval, batch_size, FT_DATA_PAIRS, device);
    if (sharded) {  // this rank's share of the batches (batched as one process batches them)
        const auto [first, last] = comm->share(batches.size());
        batches = std::vector<HostBatch>(std::make_move_iterator(batches.begin() + static_cast<std::ptrdiff_t>(first)),
                                         std::make_move_iterator(batches.begin() + static_cast<std::ptrdiff_t>(last)));
    }
    for (auto& b : batches) {
        ft_batch fb = as_ft_batch(b, b.num_labels);
        const at::Tensor lp = model.token_logprobs(fb, false);
        const at::Tensor sums = (lp * b.completion_mask.to(lp.scalar_type())).sum(-1);
        const int64_t n = b.num_examples;
        right += sums.narrow(0, 0, n).gt(sums.narrow(0, n, n)).sum().item<int64_t>();
        total += n;
    }
    if (sharded) {
        const auto sums = comm->sum({static_cast<double>(right), static_cast<double>(total)}, "preference accuracy sum");
        right = static_cast<int64_t>(sums[0]);
        total = static_cast<int64_t>(sums[1]);
    }
    return total ? static_cast<double>(right) / static_cast<double>(total) : std::nan("");
}

namespace {

// What on-policy training optimises: the graders' mean over 4 completions per held-out
// prompt sampled as in training ([stage.generation]), from a fixed seed. Across ranks
// each samples its share (sample j draws from (seed, j) wherever it runs) and rank 0
// grades them all.
std::map<std::string, double> sampled_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                             const TextCodec& codec, Communicator* comm) {
    constexpr size_t kSamples = 4;
    std::vector<const Example*> items;
    for (const auto& ex : eval) items.push_back(&ex);
    if (sc.eval.max_examples > 0 && static_cast<int64_t>(items.size()) > sc.eval.max_examples)
        items.resize(sc.eval.max_examples);
    const bool sharded = comm && comm->connected();
    const auto [first, last] = sharded ? comm->share(items.size()) : std::pair<size_t, size_t>{0, items.size()};
    std::vector<std::vector<int64_t>> prompts;
    std::vector<const std::vector<Field>*> fields;
    for (size_t i = first; i < last; ++i)
        for (size_t k = 0; k < kSamples; ++k) prompts.push_back(items[i]->prompt_ids), fields.push_back(&items[i]->fields);
    SamplingOptions o;
    o.max_new_tokens = sc.generation.max_new_tokens;
    o.temperature = sc.generation.temperature;
    o.top_k = sc.generation.top_k;
    o.top_p = sc.generation.top_p;
    o.seed = 20261129;
    o.first_row = static_cast<int64_t>(first * kSamples);
    o.cuda_graphs = sc.cuda_graphs;
    std::vector<std::string> completions;
    {
        AutocastScope autocast(model.device(), sc.bf16);
        if (!prompts.empty())
            for (const auto& g : generate(model, prompts, o, sc.eval.batch_size, codec, nullptr, fields))
                completions.push_back(g.text);
    }
    if (sharded) {
        completions = comm->gather_to_leader(completions, "gather of the sampled held-out answers");
        if (!comm->leader()) return {};
    }
    std::vector<GradeInput> inputs;
    for (size_t i = 0; i < completions.size(); ++i) {
        const Example& ex = *items[i / kSamples];
        inputs.push_back({ex.prompt_text, completions[i], ex.reference, ex.row_json});
    }
    const Grades grades = grade_all(sc.graders, inputs);
    warn_failures(sc.graders, grades, "the sampled held-out eval of stage '" + sc.name + "'");
    auto out = mean_by_grader(sc.graders, grades.scores);
    for (const auto& [k, v] : failure_counts(sc.graders, grades)) out[k] = v;
    return out;
}

}  // namespace

std::map<std::string, double> held_out_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                              const TextCodec* codec_ptr, ft_data_shape shape, at::Device device,
                                              Communicator* comm) {
    std::map<std::string, double> scores;
    if (eval.empty() || !codec_ptr) return scores;  // no text: the objective's eval loss is the score
    const TextCodec& codec = *codec_ptr;
    if (!sc.graders.empty()) {
        if (shape == FT_DATA_FEEDBACK) {
            // A thumbs-down row's completion is a wrong answer, not a reference: the
            // graders score the desirable rows only.
            std::vector<Example> desirable;
            for (const auto& ex : eval)
                if (ex.desirable == 1) desirable.push_back(ex);
            if (!desirable.empty()) scores = run_task_eval(model, desirable, sc, codec, comm).scores;
        } else {
            scores = run_task_eval(model, eval, sc, codec, comm).scores;
        }
    }
    if (shape == FT_DATA_PAIRS)
        scores["preference_accuracy"] = preference_accuracy(model, eval, sc.train.batch_size, device, comm);
    if (shape == FT_DATA_COMPLETIONS)
        for (const auto& [k, v] : sampled_scores(model, eval, sc, codec, comm)) scores["sampled/" + k] = v;
    return scores;
}

}  // namespace fthost::host
