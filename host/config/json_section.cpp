#include "config/json_section.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>

namespace fthost::host {

Section validate_json_section(const nlohmann::json& options, const std::string& where, const std::string& path,
                              const LoadedPlugin& plugin) {
    toml::table t;
    for (const auto& [k, v] : options.items()) {
        if (v.is_boolean()) t.insert(k, v.get<bool>());
        else if (v.is_number_integer()) t.insert(k, v.get<int64_t>());
        else if (v.is_number()) t.insert(k, v.get<double>());
        else if (v.is_string()) t.insert(k, v.get<std::string>());
        else if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto& x) { return x.is_string(); })) {
            toml::array a;
            for (const auto& x : v) a.push_back(x.get<std::string>());
            t.insert(k, std::move(a));
        } else {
            throw Error(where + ": option '" + k + "' has a value of no config type", FT_ERR_CONFIG);
        }
    }
    Diagnostics diag;
    Section s = validate_section(&t, where, path, plugin.desc->options, plugin.desc->option_count, diag);
    if (!diag.ok()) throw Error(diag.errors.front(), FT_ERR_CONFIG);
    return s;
}

}  // namespace fthost::host
