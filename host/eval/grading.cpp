#include "eval/grading.hpp"

#include "config/host_api.hpp"

#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cmath>

namespace fthost::host {

std::vector<std::vector<double>> grade_all(const std::vector<PluginSection>& graders, const std::vector<GradeInput>& items) {
    std::vector<std::vector<double>> scores;
    for (const auto& g : graders) {
        // A combining grader gets its sub-graders' scores with the row:
        // {"row": ..., "scores": {"<name>": score or null}} (fthost.h).
        std::vector<std::string> rows;
        if (!g.children.empty()) {
            std::vector<PluginSection> subs;
            for (const auto& [_, child] : g.children) subs.push_back(child);
            const auto sub = grade_all(subs, items);
            for (size_t i = 0; i < items.size(); ++i) {
                nlohmann::json named = nlohmann::json::object();
                for (size_t k = 0; k < subs.size(); ++k)
                    named[g.children[k].first] = std::isnan(sub[k][i]) ? nlohmann::json() : nlohmann::json(sub[k][i]);
                nlohmann::json row = nlohmann::json::parse(items[i].row_json, nullptr, false);
                rows.push_back(nlohmann::json{{"row", row.is_discarded() ? nlohmann::json() : row}, {"scores", named}}
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            }
        }
        std::vector<ft_grade_item> c_items;
        for (size_t i = 0; i < items.size(); ++i) {
            const auto& it = items[i];
            c_items.push_back({sizeof(ft_grade_item), it.prompt.c_str(), it.completion.c_str(), it.reference.c_str(),
                               rows.empty() ? it.row_json.c_str() : rows[i].c_str()});
        }
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

std::map<std::string, double> mean_by_grader(const std::vector<PluginSection>& graders,
                                             const std::vector<std::vector<double>>& scores) {
    std::map<std::string, double> out;
    for (size_t k = 0; k < graders.size(); ++k) {
        double sum = 0;
        int64_t n = 0;
        for (double v : scores[k])
            if (!std::isnan(v)) sum += v, ++n;
        out[graders[k].plugin] = n ? sum / static_cast<double>(n) : std::nan("");
    }
    return out;
}

}  // namespace fthost::host
