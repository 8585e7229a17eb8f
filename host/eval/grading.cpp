#include "eval/grading.hpp"

#include "run/host_api.hpp"

#include <fthost/plugin.hpp>

namespace fthost::host {

std::vector<std::vector<double>> grade_all(const std::vector<PluginSection>& graders, const std::vector<GradeInput>& items) {
    std::vector<ft_grade_item> c_items;
    for (const auto& it : items)
        c_items.push_back({sizeof(ft_grade_item), it.prompt.c_str(), it.completion.c_str(), it.reference.c_str(),
                           it.row_json.c_str()});
    std::vector<std::vector<double>> scores;
    for (const auto& g : graders) {
        const auto* vt = static_cast<const ft_grader_vtable*>(g.loaded->desc->vtable);
        ft_grader* grader = nullptr;
        ft_error err{};
        check(vt->create(host_api(), &g.config, &grader, &err), err);
        std::vector<ft_grade_result> res(c_items.size(), ft_grade_result{sizeof(ft_grade_result), 0.0, {0}});
        const ft_status s = vt->grade(grader, c_items.data(), static_cast<uint32_t>(c_items.size()), res.data(), &err);
        vt->destroy(grader);
        if (s != FT_OK) throw Error("grader '" + g.plugin + "': " + err.message, s);
        std::vector<double> col;
        for (const auto& r : res) col.push_back(r.score);
        scores.push_back(std::move(col));
    }
    return scores;
}

}  // namespace fthost::host
