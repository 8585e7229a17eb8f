// hf_checkpoint.hpp — a Hugging Face checkpoint as a model: the model plugin whose
// hf_architectures names config.json's architecture translates config.json into its
// options (ABI 1.3); the host validates them like any config section (defaults filled).
// The checkpoint's files themselves are io/hf_files.hpp.
#pragma once

#include "config/run_config.hpp"
#include "io/hf_files.hpp"
#include "registry/plugin_registry.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace fthost::host {

// The model plugin and its validated options for the checkpoint's config.json and the
// names of the tensors it holds (ABI 1.7 options_from_hf_checkpoint reads both).
PluginSection hf_model_section(const std::filesystem::path& dir, const std::vector<std::string>& tensor_names,
                               const PluginRegistry& registry);

}  // namespace fthost::host
