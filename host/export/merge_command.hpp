// merge_command.hpp — `fthost merge STAGE_DIR --out DIR`: a trained stage with its adapter
// folded into the base weights (W + s·BA; DoRA rescaled; QLoRA's base dequantised first),
// written as a stage directory of no parameterisation that eval, generate and later
// stages (init_from) read like any other.
#pragma once

#include "registry/plugin_registry.hpp"

#include <string>

namespace fthost::host {

struct MergeRequest {
    std::string stage_dir;  // a stage's final/ directory
    std::string out;        // the merged stage directory to write (replaced whole)
    std::string device = "cpu";
};

// Returns the exit code; prints what it wrote.
int merge_command(const MergeRequest& req, const PluginRegistry& registry);

}  // namespace fthost::host
