#include "eval/task_eval.hpp"

#include "eval/grading.hpp"
#include "generate/generator.hpp"
#include "model/autocast.hpp"

#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cmath>

namespace fthost::host {

TaskEvalResult run_task_eval(ModelSession& model, const std::vector<Example>& eval, const StageConfig& stage,
                             const TextCodec& codec, Communicator* comm) {
    TaskEvalResult result;
    std::vector<const Example*> items;
    for (const auto& ex : eval)
        if (!ex.prompt_ids.empty()) items.push_back(&ex);
    if (stage.eval.max_examples > 0 && static_cast<int64_t>(items.size()) > stage.eval.max_examples)
        items.resize(stage.eval.max_examples);
    if (items.empty() || stage.graders.empty()) return result;
    // This rank's share of the prompts (all of them in one process); rank 0 gathers the answers.
    const auto [first, last] = comm && comm->connected() ? comm->share(items.size()) : std::pair<size_t, size_t>{0, items.size()};
    std::vector<std::vector<int64_t>> prompts;
    std::vector<const std::vector<Field>*> fields;
    for (size_t i = first; i < last; ++i) prompts.push_back(items[i]->prompt_ids), fields.push_back(&items[i]->fields);
    SamplingOptions greedy;
    greedy.max_new_tokens = stage.eval.max_new_tokens;
    greedy.cuda_graphs = stage.cuda_graphs;
    std::vector<std::string> completions;
    {
        AutocastScope autocast(model.device(), stage.bf16);  // the stage's precision
        if (!prompts.empty())  // a rank's share may be empty when there are fewer prompts than ranks
            for (const auto& g : generate(model, prompts, greedy, stage.eval.batch_size, codec, nullptr, fields))
                completions.push_back(g.text);
    }
    if (comm && comm->connected()) {
        completions = comm->gather_to_leader(completions, "gather of the held-out answers");
        if (!comm->leader()) return result;
    }
    std::vector<GradeInput> inputs;
    for (size_t i = 0; i < items.size(); ++i)
        inputs.push_back({items[i]->prompt_text, completions[i], items[i]->reference, items[i]->row_json});
    const Grades grades = grade_all(stage.graders, inputs);
    warn_failures(stage.graders, grades, "the held-out eval of stage '" + stage.name + "'");
    result.scores = mean_by_grader(stage.graders, grades.scores);
    for (const auto& [k, v] : failure_counts(stage.graders, grades)) result.scores[k] = v;
    result.examples = static_cast<int64_t>(items.size());
    if (!stage.eval.group_by.empty())
        for (const auto& [k, v] : means_by_group(stage, items, grades.scores)) result.scores[k] = v;
    return result;
}

std::map<std::string, double> means_by_group(const StageConfig& stage, const std::vector<const Example*>& items,
                                             const std::vector<std::vector<double>>& scores) {
    const std::string& field = stage.eval.group_by;
    std::map<std::string, std::vector<size_t>> groups;  // value -> item indices
    for (size_t i = 0; i < items.size(); ++i) {
        const auto row = nlohmann::json::parse(items[i]->row_json, nullptr, false);
        if (row.is_object() && row.contains(field) && row[field].is_string()) groups[row[field].get<std::string>()].push_back(i);
    }
    std::map<std::string, double> out;
    for (const auto& [value, members] : groups) {
        std::vector<std::vector<double>> part(scores.size());
        for (size_t g = 0; g < scores.size(); ++g)
            for (size_t i : members) part[g].push_back(scores[g][i]);
        for (const auto& [grader, mean] : mean_by_grader(stage.graders, part)) out[field + ":" + value + "/" + grader] = mean;
    }
    return out;
}

}  // namespace fthost::host
