// run_support.hpp — running a config through the run driver in a test, and reading
// back the run directory's metrics.
#pragma once

#include "run/run_driver.hpp"
#include "test_support.hpp"

#include <fstream>

namespace fthost::test {

inline std::vector<nlohmann::json> metrics(const fs::path& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

// A stage's training lines of metrics.jsonl (those with a loss), in order.
inline std::vector<nlohmann::json> lines_of(const fs::path& run, const std::string& stage) {
    std::vector<nlohmann::json> out;
    for (const auto& m : metrics(run))
        if (m["stage"] == stage && m.contains("loss")) out.push_back(m);
    return out;
}

// Runs (or resumes) a config quietly; returns the run command's exit code.
inline int run(const fs::path& cfg, const std::string& resume = "", int64_t stop_after = 0) {
    RunRequest req{cfg.string(), {}, resume, {}};
    req.stage_options.quiet = true;
    req.stage_options.stop_after_steps = stop_after;
    return run_command(req, registry());
}

}  // namespace fthost::test
