// run_driver.hpp — the commands behind the CLI: run every stage of a config into its
// run directory (or resume one), validate a config, evaluate trained stages.
#pragma once

#include "config/run_config.hpp"
#include "train/stage_trainer.hpp"

#include <string>
#include <vector>

namespace fthost::host {

struct RunRequest {
    std::string config;
    std::vector<std::string> sets;
    std::string resume_dir;  // empty: a new run
    StageOptions stage_options;
};

// Returns the process exit code; errors are printed to stderr.
int run_command(const RunRequest& req, const PluginRegistry& registry);

// Loads and validates; prints every error. Returns the config only when valid.
std::optional<RunConfig> load_valid_config(const std::string& file, const std::vector<std::string>& sets,
                                           const PluginRegistry& registry, bool report = true);

int eval_command(const std::string& config, const std::vector<std::string>& sets, const std::string& stage,
                 const PluginRegistry& registry);

}  // namespace fthost::host
