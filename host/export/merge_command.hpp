// merge_command.hpp — `fthost merge STAGE_DIR --out DIR`: a trained stage with its adapter
// folded into the base weights (W + s·BA; DoRA rescaled; QLoRA's base dequantised first),
// written as a stage directory of no parameterisation that eval, generate and later
// stages (init_from) read like any other. The fold is computed in float32; by default
// each tensor is then written in the dtype the base stored it in (a bf16 checkpoint stays
// bf16, as its servers expect), and `--dtype fp32` keeps the float32 result.
#pragma once

#include "registry/plugin_registry.hpp"

#include <string>

namespace fthost::host {

struct MergeRequest {
    std::string stage_dir;  // a stage's final/ directory
    std::string out;        // the merged stage directory to write (replaced whole)
    std::string device = "cpu";
    std::string dtype = "base";  // "base": each tensor as the base stored it; "fp32": float32
};

// Returns the exit code; prints what it wrote.
int merge_command(const MergeRequest& req, const PluginRegistry& registry);

}  // namespace fthost::host
