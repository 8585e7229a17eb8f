#include "checkpoint/hf_checkpoint.hpp"

#include "config/host_api.hpp"
#include "config/json_section.hpp"
#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace fthost::host {

namespace {

bool reads_hf_config(const ft_model_vtable* vt) {
    if (!vt->hf_architectures) return false;
    if (FT_HAS_FIELD(vt, ft_model_vtable, options_from_hf_checkpoint) && vt->options_from_hf_checkpoint) return true;
    return FT_HAS_FIELD(vt, ft_model_vtable, options_from_hf_config) && vt->options_from_hf_config;
}

}  // namespace

PluginSection hf_model_section(const fs::path& dir, const std::vector<std::string>& tensor_names,
                               const PluginRegistry& registry) {
    const fs::path cfg_path = dir / "config.json";
    const std::string text = read_text(cfg_path);
    const nlohmann::json cfg = read_json_file(cfg_path);
    std::string arch;
    if (cfg.contains("architectures") && cfg["architectures"].is_array() && !cfg["architectures"].empty() &&
        cfg["architectures"][0].is_string())
        arch = cfg["architectures"][0].get<std::string>();
    if (arch.empty()) throw Error(cfg_path.string() + ": no \"architectures\" entry naming the model class", FT_ERR_CONFIG);

    const LoadedPlugin* found = nullptr;
    std::string supported;
    for (const LoadedPlugin* p : registry.all()) {
        if (p->desc->kind != FT_KIND_MODEL) continue;
        const auto* vt = static_cast<const ft_model_vtable*>(p->desc->vtable);
        if (!reads_hf_config(vt)) continue;
        for (const char* const* a = vt->hf_architectures; *a; ++a) {
            supported += (supported.empty() ? "" : ", ") + std::string(*a);
            if (arch == *a && !found) found = p;
        }
    }
    if (!found)
        throw Error(cfg_path.string() + ": architecture " + arch + " is not supported (model plugins read: " +
                        (supported.empty() ? "none" : supported) + ")",
                    FT_ERR_UNSUPPORTED);
    const auto* vt = static_cast<const ft_model_vtable*>(found->desc->vtable);
    std::string options;
    ft_error err{};
    const auto write = [](void* u, const char* j) { *static_cast<std::string*>(u) = j; };
    const ft_status st =
        FT_HAS_FIELD(vt, ft_model_vtable, options_from_hf_checkpoint) && vt->options_from_hf_checkpoint
            ? vt->options_from_hf_checkpoint(text.c_str(), nlohmann::json(tensor_names).dump().c_str(), write, &options, &err)
            : vt->options_from_hf_config(text.c_str(), write, &options, &err);
    if (st != FT_OK) throw Error(cfg_path.string() + ": " + err.message, st);

    PluginSection s;
    s.plugin = found->desc->name;
    s.loaded = found;
    s.config = validate_json_section(nlohmann::json::parse(options), cfg_path.string(),
                                     "model '" + s.plugin + "' (from config.json)", *found);
    // The plugin's own checks (ranges, combinations), as for a config file's section.
    if (found->desc->validate && found->desc->validate(host_api(), &s.config, &err) != FT_OK)
        throw Error(cfg_path.string() + ": " + err.message, FT_ERR_CONFIG);
    return s;
}

}  // namespace fthost::host
