#include "eval/task_eval.hpp"

#include "generate/generator.hpp"
#include "run/host_api.hpp"

#include <fthost/plugin.hpp>

#include <cmath>

namespace fthost::host {

TaskEvalResult run_task_eval(ModelSession& model, const std::vector<Example>& eval, const StageConfig& stage,
                             const ByteTokenizer& tok) {
    TaskEvalResult result;
    std::vector<const Example*> items;
    for (const auto& ex : eval)
        if (!ex.prompt_ids.empty()) items.push_back(&ex);
    if (stage.eval.max_examples > 0 && static_cast<int64_t>(items.size()) > stage.eval.max_examples)
        items.resize(stage.eval.max_examples);
    if (items.empty() || stage.graders.empty()) return result;
    std::vector<std::vector<int64_t>> prompts;
    for (const auto* ex : items) prompts.push_back(ex->prompt_ids);
    SamplingOptions greedy;
    greedy.max_new_tokens = stage.eval.max_new_tokens;
    greedy.vocab_limit = ByteTokenizer::kPad;  // never the padding id (nor ids past the tokenizer)
    const auto generated = generate(model, prompts, greedy, stage.eval.batch_size, tok);
    std::vector<std::string> completions;
    for (const auto& g : generated) completions.push_back(g.text);
    std::vector<ft_grade_item> grade_items;
    for (size_t i = 0; i < items.size(); ++i)
        grade_items.push_back({sizeof(ft_grade_item), items[i]->prompt_text.c_str(), completions[i].c_str(),
                               items[i]->reference.c_str(), items[i]->row_json.c_str()});
    for (const auto& g : stage.graders) {
        const auto* vt = static_cast<const ft_grader_vtable*>(g.loaded->desc->vtable);
        ft_grader* grader = nullptr;
        ft_error err{};
        check(vt->create(host_api(), &g.config, &grader, &err), err);
        std::vector<ft_grade_result> res(grade_items.size(), ft_grade_result{sizeof(ft_grade_result), 0.0, {0}});
        const ft_status s = vt->grade(grader, grade_items.data(), static_cast<uint32_t>(grade_items.size()), res.data(), &err);
        vt->destroy(grader);
        if (s != FT_OK) throw Error("grader '" + g.plugin + "': " + err.message, s);
        double sum = 0;
        int64_t n = 0;
        for (const auto& r : res)
            if (!std::isnan(r.score)) sum += r.score, ++n;
        result.scores[g.plugin] = n ? sum / static_cast<double>(n) : std::nan("");
    }
    result.examples = static_cast<int64_t>(items.size());
    return result;
}

}  // namespace fthost::host
