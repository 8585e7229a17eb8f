#include "registry/plugin_registry.hpp"

#include <fthost/plugin.hpp>

#include <boost/dll/shared_library.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <iostream>

#ifndef FTHOST_BUILD_PLUGIN_DIR
#define FTHOST_BUILD_PLUGIN_DIR ""
#endif
#ifndef FTHOST_TORCH_MAJOR_MINOR
#error "FTHOST_TORCH_MAJOR_MINOR must be defined by the build"
#endif

namespace fs = std::filesystem;

namespace fthost::host {

const char* kind_name(ft_kind kind) {
    switch (kind) {
        case FT_KIND_MODEL: return "model";
        case FT_KIND_PARAM: return "param";
        case FT_KIND_OBJECTIVE: return "objective";
        case FT_KIND_GRADER: return "grader";
    }
    return "unknown";
}

size_t min_vtable_size(ft_kind kind) {
    switch (kind) {
        case FT_KIND_MODEL: return offsetof(ft_model_vtable, cache_create);  // 1.0's end
        case FT_KIND_PARAM: return offsetof(ft_param_vtable, peft_config);  // 1.1's end
        // ABI 1.0's table ended before data_shape; the host reads later fields only
        // when struct_size covers them (objective_traits()).
        case FT_KIND_OBJECTIVE: return offsetof(ft_objective_vtable, data_shape);
        case FT_KIND_GRADER: return sizeof(ft_grader_vtable);
    }
    return 0;
}

ObjectiveTraits objective_traits(const ft_objective_vtable* vt) {
    ObjectiveTraits t;
    if (FT_HAS_FIELD(vt, ft_objective_vtable, needs)) {
        t.data_shape = vt->data_shape;
        t.needs = vt->needs;
    }
    if (FT_HAS_FIELD(vt, ft_objective_vtable, on_dataset)) t.on_dataset = vt->on_dataset;
    return t;
}

ModelTraits model_traits(const ft_model_vtable* vt) {
    ModelTraits t;
    if (FT_HAS_FIELD(vt, ft_model_vtable, encode_row)) {
        t.inputs = vt->inputs;
        t.label_alignment = vt->label_alignment;
        t.encode_row = vt->encode_row;
    }
    if (FT_HAS_FIELD(vt, ft_model_vtable, decoder_start_id)) t.decoder_start_id = vt->decoder_start_id;
    return t;
}

// Why a model's table cannot be used, or "" (fields of ABI 1.6 that contradict each other).
static std::string model_table_problem(const ft_model_vtable* vt) {
    const ModelTraits t = model_traits(vt);
    if ((t.inputs & (FT_INPUT_TEXT | FT_INPUT_FIELDS)) == 0 || (t.inputs & ~(FT_INPUT_TEXT | FT_INPUT_FIELDS | FT_INPUT_SOURCE)) != 0)
        return "inputs = " + std::to_string(t.inputs) + " reads neither FT_INPUT_TEXT nor FT_INPUT_FIELDS, or has unknown flags";
    if ((t.inputs & FT_INPUT_FIELDS) && !t.encode_row) return "declares FT_INPUT_FIELDS without encode_row";
    if ((t.inputs & FT_INPUT_SOURCE) && (!(t.inputs & FT_INPUT_TEXT) || !t.decoder_start_id))
        return "declares FT_INPUT_SOURCE without FT_INPUT_TEXT or without decoder_start_id";
    if ((t.inputs & FT_INPUT_SOURCE) && t.label_alignment != FT_LABEL_NEXT)
        return "declares FT_INPUT_SOURCE with FT_LABEL_SAME (decoder rows start with the start id: FT_LABEL_NEXT)";
    if (t.label_alignment != FT_LABEL_NEXT && t.label_alignment != FT_LABEL_SAME)
        return "unknown label_alignment " + std::to_string(t.label_alignment);
    if (!vt->lm_head != !vt->vocab_size) return "has one of lm_head and vocab_size without the other";
    if (!vt->lm_head && !FT_HAS_FIELD(vt, ft_model_vtable, encode_row))
        return "has no lm_head (allowed from ABI 1.6 only)";
    return "";
}

namespace {

// The plugins folder next to the running fthost executable: a build tree's (build/plugins),
// or an install's (PREFIX/lib/fthost/plugins beside PREFIX/lib/fthost/fthost); "" when
// none, or when the process is another program (the tests: build/tests/ has plugins of its own).
fs::path plugins_beside_executable() {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (ec || exe.filename() != "fthost") return {};
    const fs::path dir = exe.parent_path() / "plugins";
    return fs::is_directory(dir, ec) ? dir : fs::path();
}

}  // namespace

std::vector<fs::path> PluginRegistry::default_search_path() {
    std::vector<fs::path> dirs;
    // An installed fthost reads its own plugins, never the build tree it came from; other
    // executables of the build (the tests) read the build's.
    if (const fs::path beside = plugins_beside_executable(); !beside.empty()) dirs.push_back(beside);
    else if (std::strlen(FTHOST_BUILD_PLUGIN_DIR) > 0) dirs.emplace_back(FTHOST_BUILD_PLUGIN_DIR);
    if (const char* env = std::getenv("FTHOST_PLUGIN_PATH")) {
        std::string s(env);
        size_t start = 0;
        while (start <= s.size()) {
            const size_t end = std::min(s.find(':', start), s.size());
            if (end > start) dirs.emplace_back(s.substr(start, end - start));
            start = end + 1;
        }
    }
    return dirs;
}

void PluginRegistry::refuse(const std::string& file, const std::string& reason) {
    refusals_.push_back(file + ": " + reason);
    if (print_refusals) std::cerr << "fthost: refused plugin " << file << ": " << reason << "\n";
}

void PluginRegistry::warn(const std::string& message) {
    for (const auto& w : warnings_)
        if (w == message) return;  // once
    warnings_.push_back(message);
    if (print_refusals) std::cerr << "fthost: warning: " << message << "\n";
}

namespace {

// Why the dynamic loader refuses `path` (a missing dependency, a wrong ELF class, an
// undefined symbol): Boost.DLL's error code says only "Bad file descriptor", so ask the
// loader itself with a second dlopen of the same file and read dlerror().
std::string loader_reason(const fs::path& path, const std::string& fallback) {
    ::dlerror();
    const std::string file = path.string();
    void* h = ::dlopen((file.find('/') == std::string::npos ? "./" + file : file).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
        ::dlclose(h);
        return fallback;
    }
    const char* why = ::dlerror();
    return why ? why : fallback;
}

}  // namespace

void PluginRegistry::load_directory(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        // The build's own folder is absent in an installed fthost: nothing to say. Any other
        // folder (FTHOST_PLUGIN_PATH's) was asked for by the user.
        if (dir != fs::path(FTHOST_BUILD_PLUGIN_DIR))
            warn("plugin folder " + dir.string() + (fs::exists(dir, ec) ? " is not a directory" : " does not exist") +
                 " (check FTHOST_PLUGIN_PATH); no plugins loaded from it");
        return;
    }
    std::vector<fs::path> files;
    for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
        if (it->path().extension() == ".so") files.push_back(it->path());
    if (ec) warn("plugin folder " + dir.string() + " cannot be read (" + ec.message() + ")");
    std::sort(files.begin(), files.end());
    for (const auto& f : files) load_file(f);
}

int PluginRegistry::load_file(const fs::path& path) {
    const std::string file = path.string();
    // Plugins stay loaded for the life of the process: objects they create (autograd
    // nodes, tensors with their deleters) may outlive any point where unloading is safe.
    static std::vector<std::shared_ptr<boost::dll::shared_library>> keep_alive;
    auto lib = std::make_shared<boost::dll::shared_library>();
    boost::dll::fs::error_code ec;
    lib->load(boost::dll::fs::path(path), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec) {
        refuse(file, "not a loadable shared library (" + loader_reason(path, ec.message()) + ")");
        return 0;
    }
    if (!lib->has(FTHOST_ENTRY_SYMBOL)) {
        refuse(file, std::string("no entry symbol '") + FTHOST_ENTRY_SYMBOL + "' (not an fthost plugin, or built without FTHOST_PLUGINS)");
        return 0;
    }
    // Once per library: loading a file again (dlopen gives the same handle) adds nothing to
    // keep (tests/fuzz/fuzz_plugin_desc loads one file millions of times).
    if (std::none_of(keep_alive.begin(), keep_alive.end(), [&](const auto& k) { return k->native() == lib->native(); }))
        keep_alive.push_back(lib);
    auto entry = lib->get<const ft_plugin_desc* const*(uint32_t*)>(FTHOST_ENTRY_SYMBOL);
    uint32_t count = 0;
    const ft_plugin_desc* const* list = entry(&count);
    if (!list || count == 0) {
        refuse(file, "entry symbol returned no plugins");
        return 0;
    }
    int added = 0;
    for (uint32_t i = 0; i < count; ++i) {
        const ft_plugin_desc* d = list[i];
        if (!d) {
            refuse(file, "descriptor " + std::to_string(i) + " is NULL");
            continue;
        }
        // Read abi_major before trusting anything else: it sits right after struct_size.
        if (d->struct_size < offsetof(ft_plugin_desc, kind)) {
            refuse(file, "descriptor " + std::to_string(i) + " struct too small (" + std::to_string(d->struct_size) + " bytes)");
            continue;
        }
        if (d->abi_major != FTHOST_ABI_MAJOR) {
            refuse(file, "ABI major " + std::to_string(d->abi_major) + " differs from the host's " +
                             std::to_string(FTHOST_ABI_MAJOR));
            continue;
        }
        if (d->struct_size < sizeof(ft_plugin_desc)) {
            refuse(file, "descriptor struct too small (" + std::to_string(d->struct_size) + " bytes, ABI " +
                             std::to_string(FTHOST_ABI_MAJOR) + ".0 needs " + std::to_string(sizeof(ft_plugin_desc)) + ")");
            continue;
        }
        const std::string name = d->name ? d->name : "";
        if (name.empty()) {
            refuse(file, "plugin with an empty name");
            continue;
        }
        const std::string label = std::string(kind_name(d->kind)) + " '" + name + "'";
        const size_t need = min_vtable_size(d->kind);
        if (need == 0) {
            refuse(file, label + ": unknown kind " + std::to_string(d->kind));
            continue;
        }
        if (d->kind != FT_KIND_GRADER && !d->torch_version) {
            refuse(file, label + ": uses tensors but declares no LibTorch version");
            continue;
        }
        if (d->torch_version && std::string(d->torch_version) != FTHOST_TORCH_MAJOR_MINOR) {
            refuse(file, label + ": built with LibTorch " + d->torch_version + ", the host uses " + FTHOST_TORCH_MAJOR_MINOR);
            continue;
        }
        if (!d->vtable || *static_cast<const uint32_t*>(d->vtable) < need) {
            refuse(file, label + ": function table struct too small (" +
                             std::to_string(d->vtable ? *static_cast<const uint32_t*>(d->vtable) : 0) + " bytes, needs " +
                             std::to_string(need) + ")");
            continue;
        }
        if (d->kind == FT_KIND_MODEL) {
            const std::string problem = model_table_problem(static_cast<const ft_model_vtable*>(d->vtable));
            if (!problem.empty()) {
                refuse(file, label + ": " + problem);
                continue;
            }
        }
        if (d->kind == FT_KIND_OBJECTIVE) {
            const ObjectiveTraits t = objective_traits(static_cast<const ft_objective_vtable*>(d->vtable));
            if (t.data_shape < FT_DATA_SEQUENCES || t.data_shape > FT_DATA_COMPLETIONS) {
                refuse(file, label + ": unknown data shape " + std::to_string(t.data_shape));
                continue;
            }
        }
        bool options_ok = true;
        for (uint32_t k = 0; k < d->option_count; ++k)
            if (!d->options || d->options[k].struct_size < sizeof(ft_option) || !d->options[k].name) options_ok = false;
        if (!options_ok) {
            refuse(file, label + ": malformed option table");
            continue;
        }
        auto key = std::make_pair(d->kind, name);
        if (auto it = plugins_.find(key); it != plugins_.end()) {
            refuse(file, "duplicate " + label + " (already loaded from " + it->second.file + ")");
            continue;
        }
        plugins_[key] = LoadedPlugin{d, file};
        ++added;
    }
    return added;
}

const LoadedPlugin* PluginRegistry::find(ft_kind kind, const std::string& name) const {
    auto it = plugins_.find({kind, name});
    return it == plugins_.end() ? nullptr : &it->second;
}

const LoadedPlugin& PluginRegistry::require(ft_kind kind, const std::string& name) const {
    if (const auto* p = find(kind, name)) return *p;
    std::string known;
    for (const auto& [key, p] : plugins_)
        if (key.first == kind) known += (known.empty() ? "" : ", ") + key.second;
    throw Error(std::string("no ") + kind_name(kind) + " plugin named '" + name + "' (loaded: " +
                    (known.empty() ? "none" : known) + "; `fthost plugins` lists them)",
                FT_ERR_CONFIG);
}

std::vector<const LoadedPlugin*> PluginRegistry::all() const {
    std::vector<const LoadedPlugin*> out;
    for (const auto& [_, p] : plugins_) out.push_back(&p);
    return out;
}

}  // namespace fthost::host
