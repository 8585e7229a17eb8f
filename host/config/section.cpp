#include "config/section.hpp"

#include <fthost/plugin.hpp>

#include <sstream>

namespace fthost::host {

std::string where_of(const std::string& file, const toml::node& node) { return where_of(file, node.source()); }

std::string where_of(const std::string& file, const toml::source_region& src) {
    if (src.begin.line == 0) return file;
    return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

namespace {

const char* type_name(ft_option_type t) {
    switch (t) {
        case FT_OPT_INT: return "an integer";
        case FT_OPT_FLOAT: return "a number";
        case FT_OPT_BOOL: return "a boolean";
        case FT_OPT_STRING: return "a string";
        case FT_OPT_STRING_LIST: return "an array of strings";
    }
    return "?";
}

// Converts a TOML node to the option's type; false if it has another type.
bool convert(const toml::node& node, ft_option_type type, Value& out) {
    switch (type) {
        case FT_OPT_INT:
            if (auto v = node.value_exact<int64_t>()) return out = *v, true;
            return false;
        case FT_OPT_FLOAT:
            if (auto v = node.value_exact<double>()) return out = *v, true;
            if (auto v = node.value_exact<int64_t>()) return out = static_cast<double>(*v), true;
            return false;
        case FT_OPT_BOOL:
            if (auto v = node.value_exact<bool>()) return out = *v, true;
            return false;
        case FT_OPT_STRING:
            if (auto v = node.value_exact<std::string>()) return out = *v, true;
            return false;
        case FT_OPT_STRING_LIST: {
            const auto* arr = node.as_array();
            if (!arr) return false;
            std::vector<std::string> items;
            for (const auto& el : *arr) {
                auto v = el.value_exact<std::string>();
                if (!v) return false;
                items.push_back(*v);
            }
            out = std::move(items);
            return true;
        }
    }
    return false;
}

}  // namespace

Section validate_section(const toml::table* table, const std::string& file, const std::string& path,
                         const ft_option* options, uint32_t option_count, Diagnostics& diag,
                         const std::set<std::string>& skip) {
    Section s;
    s.path = path;
    s.section_where = table ? where_of(file, *table) : file;
    std::map<std::string, const ft_option*> declared;
    for (uint32_t i = 0; i < option_count; ++i) declared[options[i].name] = &options[i];

    std::set<std::string> invalid;  // present with a wrong type: reported, no default
    if (table) {
        for (const auto& [key, node] : *table) {
            const std::string k(key.str());
            if (skip.count(k)) continue;
            const std::string w = where_of(file, key.source());
            auto it = declared.find(k);
            if (it == declared.end()) {
                std::string known;
                for (const auto& [name, _] : declared) known += (known.empty() ? "" : ", ") + name;
                diag.add(w, "unknown key '" + k + "' in " + path + (known.empty() ? " (it takes no keys)" : " (known: " + known + ")"));
                continue;
            }
            Value v;
            if (!convert(node, it->second->type, v)) {
                diag.add(w, "key '" + k + "' in " + path + " must be " + type_name(it->second->type));
                invalid.insert(k);
                continue;
            }
            s.values[k] = std::move(v);
            s.where[k] = w;
        }
    }
    for (const auto& [name, opt] : declared) {
        if (s.has(name) || invalid.count(name)) continue;
        if (opt->required) {
            diag.add(s.section_where, "missing required key '" + name + "' in " + path);
            continue;
        }
        if (!opt->default_value) continue;
        // Defaults are TOML literals declared by the plugin; parse them as TOML.
        try {
            auto doc = toml::parse(std::string("v = ") + opt->default_value);
            Value v;
            if (!convert(*doc.get("v"), opt->type, v))
                diag.add(s.section_where, "plugin bug: default of '" + name + "' is not " + type_name(opt->type));
            else
                s.values[name] = std::move(v);
        } catch (const toml::parse_error&) {
            diag.add(s.section_where, "plugin bug: default of '" + name + "' is not a TOML literal");
        }
        s.where[name] = s.section_where + " (default)";
    }
    return s;
}

}  // namespace fthost::host

// ---- typed access (the host api's config_* functions call these) -----------------------

using fthost::host::Value;

static const Value& must(const ft_config_s& c, const std::string& key) {
    auto it = c.values.find(key);
    if (it == c.values.end()) throw fthost::Error(c.path + ": no value for '" + key + "'", FT_ERR_CONFIG);
    return it->second;
}

int64_t ft_config_s::get_int(const std::string& key) const { return std::get<int64_t>(must(*this, key)); }
double ft_config_s::get_float(const std::string& key) const {
    const Value& v = must(*this, key);
    if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    return std::get<double>(v);
}
bool ft_config_s::get_bool(const std::string& key) const { return std::get<bool>(must(*this, key)); }
const std::string& ft_config_s::get_string(const std::string& key) const {
    return std::get<std::string>(must(*this, key));
}
const std::vector<std::string>& ft_config_s::get_list(const std::string& key) const {
    return std::get<std::vector<std::string>>(must(*this, key));
}
std::string ft_config_s::where_of(const std::string& key) const {
    auto it = where.find(key);
    return it == where.end() ? section_where : it->second;
}
