#include "eval/grading.hpp"

#include "config/host_api.hpp"

#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>

namespace fthost::host {
namespace {

// The combining grader's row JSON for each item: {"row": ..., "scores": {"<name>": score
// or null}} (fthost.h).
std::vector<std::string> combined_rows(const PluginSection& g, const Grades& sub, const std::vector<GradeInput>& items) {
    std::vector<std::string> rows;
    for (size_t i = 0; i < items.size(); ++i) {
        nlohmann::json named = nlohmann::json::object();
        for (size_t k = 0; k < g.children.size(); ++k)
            named[g.children[k].first] = std::isnan(sub.scores[k][i]) ? nlohmann::json() : nlohmann::json(sub.scores[k][i]);
        nlohmann::json row = nlohmann::json::parse(items[i].row_json, nullptr, false);
        rows.push_back(nlohmann::json{{"row", row.is_discarded() ? nlohmann::json() : row}, {"scores", named}}
                           .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    return rows;
}

// One call of one grader over all items; false (with the plugin's message) when it failed.
bool call_grader(const PluginSection& g, const std::vector<GradeInput>& items, const std::vector<std::string>& rows,
                 std::vector<double>& scores, std::string& why) {
    std::vector<ft_grade_item> c_items;
    for (size_t i = 0; i < items.size(); ++i) {
        const auto& it = items[i];
        c_items.push_back({sizeof(ft_grade_item), it.prompt.c_str(), it.completion.c_str(), it.reference.c_str(),
                           rows.empty() ? it.row_json.c_str() : rows[i].c_str()});
    }
    const auto* vt = static_cast<const ft_grader_vtable*>(g.loaded->desc->vtable);
    ft_grader* grader = nullptr;
    ft_error err{};
    // A grader that cannot even be created is a configuration problem, not a lost batch.
    check(vt->create(host_api(), &g.config, &grader, &err), err);
    std::vector<ft_grade_result> res(c_items.size(), ft_grade_result{sizeof(ft_grade_result), 0.0, {0}});
    const ft_status s = vt->grade(grader, c_items.data(), static_cast<uint32_t>(c_items.size()), res.data(), &err);
    vt->destroy(grader);
    if (s != FT_OK) {
        err.message[FT_ERROR_MESSAGE_SIZE - 1] = '\0';
        why = err.message[0] ? err.message : "failed without a message";
        return false;
    }
    scores.clear();
    for (const auto& r : res) scores.push_back(r.score);
    return true;
}

}  // namespace

bool Grades::lost_any(size_t item) const {
    for (const auto& l : lost)
        if (l[item]) return true;
    return false;
}

Grades grade_all(const std::vector<PluginSection>& graders, const std::vector<GradeInput>& items) {
    Grades out;
    const size_t n = items.size();
    for (const auto& g : graders) {
        std::vector<char> lost(n, 0);
        GraderFailure failure;
        std::vector<std::string> rows;
        if (!g.children.empty()) {
            std::vector<PluginSection> subs;
            for (const auto& [_, child] : g.children) subs.push_back(child);
            const Grades sub = grade_all(subs, items);
            for (size_t k = 0; k < subs.size(); ++k)
                if (sub.failures[k].calls) {
                    failure.calls += sub.failures[k].calls;
                    failure.reason = "sub-grader '" + g.children[k].first + "': " + sub.failures[k].reason;
                }
            for (size_t i = 0; i < n; ++i) lost[i] = sub.lost_any(i);
            rows = combined_rows(g, sub, items);
        }
        std::vector<double> scores(n, 0.0);
        std::string why;
        if (!call_grader(g, items, rows, scores, why)) {
            if (g.on_error == "fail")
                throw Error("grader '" + g.plugin + "' failed (on_error = \"fail\"): " + why, FT_ERR_RUNTIME);
            failure.reason = why;
            ++failure.calls;
            scores.assign(n, g.on_error == "zero" ? 0.0 : std::nan(""));
            if (g.on_error == "skip") lost.assign(n, 1);
        }
        for (size_t i = 0; i < n; ++i) {
            if (lost[i]) scores[i] = std::nan("");
            if (lost[i] || failure.calls) ++failure.items;
        }
        out.scores.push_back(std::move(scores));
        out.lost.push_back(std::move(lost));
        out.failures.push_back(std::move(failure));
    }
    return out;
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

std::map<std::string, double> failure_counts(const std::vector<PluginSection>& graders, const Grades& grades) {
    std::map<std::string, double> out;
    for (size_t k = 0; k < graders.size(); ++k)
        if (grades.failures[k].calls) out[graders[k].plugin + "/failed"] += static_cast<double>(grades.failures[k].items);
    return out;
}

void warn_failures(const std::vector<PluginSection>& graders, const Grades& grades, const std::string& what) {
    for (size_t k = 0; k < graders.size(); ++k) {
        const GraderFailure& f = grades.failures[k];
        if (!f.calls) continue;
        std::cerr << "fthost: warning: grader '" << graders[k].plugin << "' failed in " << what << ": " << f.reason
                  << " — its " << f.items << " item" << (f.items == 1 ? "" : "s")
                  << (graders[k].on_error == "zero" ? " score 0 (on_error = \"zero\")" : " have no score (on_error = \"skip\")")
                  << "\n";
    }
}

}  // namespace fthost::host
