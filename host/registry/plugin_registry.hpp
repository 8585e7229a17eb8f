// plugin_registry.hpp — finds plugin libraries, checks them, and indexes their plugins
// by (kind, name). A library or plugin that fails a check is refused with one line
// naming the file and the reason; loading goes on with the rest.
#pragma once

#include <fthost/fthost.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fthost::host {

struct LoadedPlugin {
    const ft_plugin_desc* desc = nullptr;
    std::string file;
};

class PluginRegistry {
public:
    // The plugins folder beside the executable (the build's, or an install's
    // lib/fthost/plugins), else the build's; then each folder of FTHOST_PLUGIN_PATH
    // (':'-separated).
    static std::vector<std::filesystem::path> default_search_path();

    // Loads every *.so in dir (sorted by name, so refusals are deterministic).
    void load_directory(const std::filesystem::path& dir);
    // Loads one library; returns the number of plugins it added.
    int load_file(const std::filesystem::path& file);

    const LoadedPlugin* find(ft_kind kind, const std::string& name) const;
    // Throws fthost::Error naming the plugins of that kind that exist.
    const LoadedPlugin& require(ft_kind kind, const std::string& name) const;
    std::vector<const LoadedPlugin*> all() const;
    const std::vector<std::string>& refusals() const { return refusals_; }
    // Plugin folders that were skipped (missing, not a directory, unreadable), each once.
    const std::vector<std::string>& warnings() const { return warnings_; }

    // When true (the default) each refusal and warning is also printed to stderr as it happens.
    bool print_refusals = true;

private:
    void refuse(const std::string& file, const std::string& reason);
    void warn(const std::string& message);
    std::vector<std::string> warnings_;
    std::map<std::pair<ft_kind, std::string>, LoadedPlugin> plugins_;
    std::vector<std::string> refusals_;
};

const char* kind_name(ft_kind kind);

// The smallest vtable size for each kind that ABI 1.0 defines.
size_t min_vtable_size(ft_kind kind);

// An objective's table read up to its struct_size: fields a 1.0 plugin lacks take
// their 1.0 meaning (one sequence per row, needs nothing, no on_dataset).
struct ObjectiveTraits {
    ft_data_shape data_shape = FT_DATA_SEQUENCES;
    uint32_t needs = 0;
    ft_status (*on_dataset)(ft_objective*, const ft_dataset_info*, ft_error*) = nullptr;
};
ObjectiveTraits objective_traits(const ft_objective_vtable* vt);

// A model's table read up to its struct_size: a table before 1.6 reads text, with labels
// predicted from the previous position, and has no encode_row.
struct ModelTraits {
    uint32_t inputs = FT_INPUT_TEXT;
    int32_t label_alignment = FT_LABEL_NEXT;
    ft_status (*encode_row)(ft_model*, const char*, ft_label_policy, int64_t, const ft_example_sink*, ft_error*) = nullptr;
    int64_t (*decoder_start_id)(ft_model*) = nullptr;
};
ModelTraits model_traits(const ft_model_vtable* vt);

}  // namespace fthost::host
