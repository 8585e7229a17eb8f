// json_section.hpp — a plugin's options given as JSON (the sections a stage.json saved,
// what a model plugin's options_from_hf_config returns) checked and defaulted by the
// same code as a config file's section, so keys a plugin gained later take defaults and
// a wrong value gets the usual message.
#pragma once

#include "config/section.hpp"
#include "registry/plugin_registry.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace fthost::host {

// Throws Error (FT_ERR_CONFIG) with the first problem; `where` names the file.
Section validate_json_section(const nlohmann::json& options, const std::string& where, const std::string& path,
                              const LoadedPlugin& plugin);

}  // namespace fthost::host
