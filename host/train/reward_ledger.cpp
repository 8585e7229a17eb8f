#include "train/reward_ledger.hpp"

#include <fthost/plugin.hpp>

#include <cstdio>
#include <iostream>

namespace fthost::host {
namespace {

std::string percent(int64_t part, int64_t whole) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0);
    return buf;
}

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

}  // namespace

void record_grading(nlohmann::json& ledger, const StageConfig& sc, const Rollout& r, int64_t step, bool warn) {
    if (!ledger.is_object()) ledger = nlohmann::json::object();
    for (size_t k = 0; k < sc.graders.size(); ++k) {
        const PluginSection& g = sc.graders[k];
        const GraderFailure& f = r.failures.at(k);
        nlohmann::json& e = ledger[g.plugin];
        if (e.is_null()) e = {{"graded", 0}, {"lost", 0}, {"failed_calls", 0}, {"last_error", ""}};
        e["graded"] = e["graded"].get<int64_t>() + r.graded;
        if (!f.calls) continue;
        e["lost"] = e["lost"].get<int64_t>() + f.items;
        e["failed_calls"] = e["failed_calls"].get<int64_t>() + f.calls;
        e["last_error"] = f.reason;
        const int64_t lost = e["lost"], graded = e["graded"], calls = e["failed_calls"];
        if (warn)
            std::cerr << "fthost: warning: stage '" << sc.name << "' step " << step << ": grader '" << g.plugin
                      << "' failed: " << f.reason << " — its " << f.items << " rewards "
                      << (g.on_error == "zero" ? "are 0 (on_error = \"zero\")"
                                               : "are lost (on_error = \"skip\"; their prompts are not trained on)")
                      << "; so far " << calls << " failed call" << (calls == 1 ? "" : "s") << ", " << lost << " of "
                      << graded << " rewards lost (" << percent(lost, graded) << ")\n";
        if (static_cast<double>(lost) > g.max_failure_fraction * static_cast<double>(graded))
            throw Error("stage '" + sc.name + "': grader '" + g.plugin + "' has lost " + std::to_string(lost) + " of " +
                            std::to_string(graded) + " rewards (" + percent(lost, graded) +
                            "), more than its max_failure_fraction = " + number(g.max_failure_fraction) +
                            " allows ([[stage.grader]] on_error / max_failure_fraction); the last failure: " + f.reason,
                        FT_ERR_RUNTIME);
    }
}

}  // namespace fthost::host
