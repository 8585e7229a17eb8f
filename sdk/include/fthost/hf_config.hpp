// hf_config.hpp — helpers for a model plugin's options_from_hf_config /
// options_from_hf_checkpoint (ABI 1.3 / 1.7): reading a Hugging Face config.json with
// nlohmann::json (which a plugin using this header needs on its include path) and
// failing with errors that name the config.json key.
#pragma once

#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace fthost::hf {

// config.json's text as JSON; an error saying it is not JSON otherwise.
inline nlohmann::json parse_config(const std::string& text) {
    try {
        return nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("config.json is not JSON: ") + e.what(), FT_ERR_INVALID_ARGUMENT);
    }
}

// A setting the model cannot honour: "config.json: <key>: <why>".
[[noreturn]] inline void unsupported(const std::string& key, const std::string& why) {
    throw Error("config.json: " + key + ": " + why, FT_ERR_UNSUPPORTED);
}

// The key's value, or null when it is absent or JSON null (as transformers reads a missing key).
inline const nlohmann::json* find(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace fthost::hf
