#include "config/host_api.hpp"

#include "config/section.hpp"

#include <fthost/torch.hpp>

#include <iostream>

namespace fthost::host {
namespace {

uint64_t g_seed = 42;
thread_local bool t_loading_weights = false;
thread_local std::string t_run_device;  // "" outside a RunDeviceScope

void log(ft_log_level level, const char* plugin, const char* message) {
    static const char* names[] = {"debug", "info", "warning", "error"};
    const char* lvl = (level >= 0 && level <= 3) ? names[level] : "log";
    std::cerr << "[" << (plugin ? plugin : "plugin") << "] " << lvl << ": " << (message ? message : "") << "\n";
}

// A config getter never throws across the boundary: an undeclared key is a plugin bug,
// reported once and answered with a zero value.
template <class F, class R>
R safe(const ft_config* c, const char* key, F f, R fallback) {
    try {
        return f(*c, key);
    } catch (const std::exception& e) {
        std::cerr << "fthost: plugin asked for config key '" << key << "' of " << c->path << ": " << e.what() << "\n";
        return fallback;
    }
}

const ft_host_api kApi = {
    sizeof(ft_host_api),
    FTHOST_ABI_MAJOR,
    FTHOST_ABI_MINOR,
    &log,
    [](const ft_config* c, const char* k) -> int32_t { return c->has(k) ? 1 : 0; },
    [](const ft_config* c, const char* k) -> int64_t {
        return safe(c, k, [](const ft_config& cc, const char* kk) { return cc.get_int(kk); }, int64_t{0});
    },
    [](const ft_config* c, const char* k) -> double {
        return safe(c, k, [](const ft_config& cc, const char* kk) { return cc.get_float(kk); }, 0.0);
    },
    [](const ft_config* c, const char* k) -> int32_t {
        return safe(c, k, [](const ft_config& cc, const char* kk) { return cc.get_bool(kk) ? 1 : 0; }, 0);
    },
    [](const ft_config* c, const char* k) -> const char* {
        static const std::string empty;
        return safe(c, k, [](const ft_config& cc, const char* kk) { return cc.get_string(kk).c_str(); }, empty.c_str());
    },
    [](const ft_config* c, const char* k) -> uint32_t {
        return safe(c, k, [](const ft_config& cc, const char* kk) { return static_cast<uint32_t>(cc.get_list(kk).size()); },
                    uint32_t{0});
    },
    [](const ft_config* c, const char* k, uint32_t i) -> const char* {
        static const std::string empty;
        return safe(c, k, [i](const ft_config& cc, const char* kk) { return cc.get_list(kk).at(i).c_str(); },
                    empty.c_str());
    },
    [](const ft_config* c, const char* k) -> const char* {
        // Kept alive per thread until the next call: messages are built right away.
        thread_local std::string w;
        w = c->where_of(k);
        return w.c_str();
    },
    []() -> uint64_t { return g_seed; },
    [](ft_tensor t) { delete reinterpret_cast<at::Tensor*>(t); },
    [](ft_run* run, const ft_batch* batch, int32_t model, ft_tensor* out, ft_error* err) -> ft_status {
        return guard(err, [&] { *out = new_handle(run->token_logprobs(*batch, model, 1.0)); });
    },
    [](ft_run* run, const char* name, double value) { run->metric(name, value); },
    [](ft_run* run, const ft_batch* batch, int32_t model, ft_tensor* out, ft_error* err) -> ft_status {
        return guard(err, [&] {
            if (!run->label_logits) throw Error("this run gives no label logits", FT_ERR_UNSUPPORTED);
            *out = new_handle(run->label_logits(*batch, model));
        });
    },
    [](ft_run* run, const ft_batch* batch, int32_t model, double temperature, ft_tensor* out, ft_error* err) -> ft_status {
        return guard(err, [&] {
            if (!(temperature > 0)) throw Error("run_token_logprobs_at: temperature must be positive", FT_ERR_INVALID_ARGUMENT);
            *out = new_handle(run->token_logprobs(*batch, model, temperature));
        });
    },
    [](ft_run* run, const ft_batch* batch, int32_t model, ft_tensor_visitor visit, void* user, ft_error* err) -> ft_status {
        return guard(err, [&] {
            if (!run->model_outputs) throw Error("this run gives no model outputs", FT_ERR_UNSUPPORTED);
            for (auto& [name, t] : run->model_outputs(*batch, model)) visit(user, name.c_str(), reinterpret_cast<ft_tensor>(&t));
        });
    },
    []() -> int32_t { return t_loading_weights ? 1 : 0; },
    []() -> const char* { return t_run_device.empty() ? nullptr : t_run_device.c_str(); },
};

}  // namespace

const ft_host_api* host_api() { return &kApi; }
void set_host_seed(uint64_t seed) { g_seed = seed; }

LoadingWeightsScope::LoadingWeightsScope() : outer_(t_loading_weights) { t_loading_weights = true; }
LoadingWeightsScope::~LoadingWeightsScope() { t_loading_weights = outer_; }

RunDeviceScope::RunDeviceScope(std::string device) : outer_(std::move(t_run_device)) { t_run_device = std::move(device); }
RunDeviceScope::~RunDeviceScope() { t_run_device = std::move(outer_); }

}  // namespace fthost::host
