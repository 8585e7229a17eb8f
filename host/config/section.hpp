// section.hpp — one validated config section: what an ft_config handle points to.
//
// Every section — the host's own ([run], [stage.train], ...) and each plugin's — is
// declared as an array of ft_option and checked by the same code, so unknown keys,
// wrong types and missing keys get the same message with file:line:column everywhere.
#pragma once

#include <fthost/fthost.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <toml++/toml.h>

namespace fthost::host {

// Collects every error of a config, so `fthost validate` reports all of them at once.
struct Diagnostics {
    std::vector<std::string> errors;
    void add(const std::string& where, const std::string& what) { errors.push_back(where + ": " + what); }
    bool ok() const { return errors.empty(); }
};

// "file:line:column" of a TOML node (or of the whole file when it has no source).
std::string where_of(const std::string& file, const toml::node& node);
std::string where_of(const std::string& file, const toml::source_region& src);

using Value = std::variant<int64_t, double, bool, std::string, std::vector<std::string>>;

}  // namespace fthost::host

// The concrete type behind the opaque ft_config handle.
struct ft_config_s {
    std::string path;  // e.g. "stage 'finetune' param"
    std::map<std::string, fthost::host::Value> values;
    std::map<std::string, std::string> where;  // key -> file:line:column
    std::string section_where;                 // the section's own location

    bool has(const std::string& key) const { return values.count(key) != 0; }
    int64_t get_int(const std::string& key) const;
    double get_float(const std::string& key) const;
    bool get_bool(const std::string& key) const;
    const std::string& get_string(const std::string& key) const;
    const std::vector<std::string>& get_list(const std::string& key) const;
    std::string where_of(const std::string& key) const;
};

namespace fthost::host {

using Section = ft_config_s;

// Checks `table` against `options` (keys in `skip` belong to someone else), fills
// defaults, and adds every problem to diag.
Section validate_section(const toml::table* table, const std::string& file, const std::string& path,
                         const ft_option* options, uint32_t option_count, Diagnostics& diag,
                         const std::set<std::string>& skip = {});

}  // namespace fthost::host
