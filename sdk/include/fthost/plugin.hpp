// plugin.hpp — header-only C++ layer over fthost.h for plugin authors; needs no LibTorch.
//
// What it gives: exceptions turned into statuses at every C entry (guard), a typed view
// of the plugin's config section (Config), the host's services (Host), the grader
// macro, and the one entry point (FTHOST_PLUGINS). LibTorch plugins also include
// fthost/torch.hpp for tensors, models, parameterisations and objectives.
#pragma once

#include <fthost/fthost.h>

#include <cstdio>
#include <cstring>
#include <cstddef>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fthost {
inline namespace v1 {

// An error with a status; any other std::exception becomes FT_ERR_RUNTIME.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, ft_status status = FT_ERR_RUNTIME)
        : std::runtime_error(message), status_(status) {}
    ft_status status() const noexcept { return status_; }

private:
    ft_status status_;
};

inline void set_error(ft_error* err, const char* message) noexcept {
    if (!err) return;
    std::snprintf(err->message, sizeof(err->message), "%s", message);
}

// Runs f, turning every exception into a status and a message: no exception crosses
// the C boundary.
template <class F>
ft_status guard(ft_error* err, F&& f) noexcept {
    try {
        f();
        return FT_OK;
    } catch (const Error& e) {
        set_error(err, e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_error(err, "out of memory");
        return FT_ERR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        set_error(err, e.what());
        return FT_ERR_RUNTIME;
    } catch (...) {
        set_error(err, "unknown exception");
        return FT_ERR_RUNTIME;
    }
}

// Throws the message of a failed C call as an Error.
inline void check(ft_status status, const ft_error& err) {
    if (status != FT_OK) throw Error(err.message, status);
}

// The host's services, as handed to create().
class Host {
public:
    explicit Host(const ft_host_api* api) : api_(api) {}
    const ft_host_api* api() const { return api_; }
    void log(ft_log_level level, const char* plugin, const std::string& message) const {
        api_->log(level, plugin, message.c_str());
    }
    uint64_t seed() const { return api_->seed(); }
    // ABI 1.9: the device the model computes on, during create() ("cpu", "cuda:0"); "" when
    // the host does not say (an older host, or outside create()).
    std::string run_device() const {
        if (!FT_HAS_FIELD(api_, ft_host_api, run_device) || !api_->run_device) return "";
        const char* d = api_->run_device();
        return d ? d : "";
    }

private:
    const ft_host_api* api_;
};

// A plugin's config section, validated by the host against the declared options.
class Config {
public:
    Config(const ft_host_api* api, const ft_config* cfg) : api_(api), cfg_(cfg) {}
    bool has(const char* key) const { return api_->config_has(cfg_, key) != 0; }
    int64_t get_int(const char* key) const { return api_->config_int(cfg_, key); }
    double get_float(const char* key) const { return api_->config_float(cfg_, key); }
    bool get_bool(const char* key) const { return api_->config_bool(cfg_, key) != 0; }
    std::string get_string(const char* key) const { return api_->config_string(cfg_, key); }
    std::vector<std::string> get_string_list(const char* key) const {
        std::vector<std::string> out;
        const uint32_t n = api_->config_list_size(cfg_, key);
        for (uint32_t i = 0; i < n; ++i) out.emplace_back(api_->config_list_item(cfg_, key, i));
        return out;
    }
    // A config error that names file:line:column of the key.
    [[noreturn]] void fail(const char* key, const std::string& why) const {
        throw Error(std::string(api_->config_where(cfg_, key)) + ": " + key + ": " + why, FT_ERR_CONFIG);
    }

private:
    const ft_host_api* api_;
    const ft_config* cfg_;
};

// Fills an ft_option entry; use in a static array.
constexpr ft_option option(const char* name, ft_option_type type, const char* default_value, const char* help,
                           bool required = false) {
    return ft_option{sizeof(ft_option), name, type, required ? 1 : 0, default_value, help};
}

// ---- graders -------------------------------------------------------------------------
//
// A grader class: constructor (const Host&, const Config&) and
//   double grade(const ft_grade_item& item, std::string& reason)   (NaN = not applicable)
namespace detail {
// Option arrays may be absent (nullptr): a plugin with nothing to configure.
template <size_t N>
constexpr const ft_option* option_ptr(const ft_option (&a)[N]) { return a; }
constexpr const ft_option* option_ptr(std::nullptr_t) { return nullptr; }
template <size_t N>
constexpr uint32_t option_count(const ft_option (&)[N]) { return static_cast<uint32_t>(N); }
constexpr uint32_t option_count(std::nullptr_t) { return 0; }

// Class::validate(const Config&), when the class declares one, becomes the descriptor's
// validate entry; the constructor should call it too.
template <class C, class = void>
struct HasValidate : std::false_type {};
template <class C>
struct HasValidate<C, std::void_t<decltype(C::validate(std::declval<const Config&>()))>> : std::true_type {};
template <class C>
struct ValidateThunk {
    static ft_status call(const ft_host_api* host, const ft_config* cfg, ft_error* err) {
        return guard(err, [&] { C::validate(Config(host, cfg)); });
    }
};
using ValidateFn = ft_status (*)(const ft_host_api*, const ft_config*, ft_error*);
template <class C>
constexpr ValidateFn validate_fn() {
    if constexpr (HasValidate<C>::value) return &ValidateThunk<C>::call;
    else return nullptr;
}

template <class G>
struct GraderThunks {
    static ft_status create(const ft_host_api* host, const ft_config* cfg, ft_grader** out, ft_error* err) {
        return guard(err, [&] { *out = reinterpret_cast<ft_grader*>(new G(Host(host), Config(host, cfg))); });
    }
    static void destroy(ft_grader* g) { delete reinterpret_cast<G*>(g); }
    static ft_status grade(ft_grader* g, const ft_grade_item* items, uint32_t count, ft_grade_result* results,
                           ft_error* err) {
        return guard(err, [&] {
            for (uint32_t i = 0; i < count; ++i) {
                std::string reason;
                results[i].score = reinterpret_cast<G*>(g)->grade(items[i], reason);
                std::snprintf(results[i].reason, sizeof(results[i].reason), "%s", reason.c_str());
            }
        });
    }
    static constexpr ft_grader_vtable vtable{sizeof(ft_grader_vtable), &create, &destroy, &grade};
};
}  // namespace detail

}  // namespace v1
}  // namespace fthost

// Declares the descriptor `fthost_desc_<ident>` for a grader class.
#define FTHOST_GRADER(ident, Class, name, version, description, options, flags)                          \
    static const ft_plugin_desc fthost_desc_##ident = {                                                    \
        sizeof(ft_plugin_desc), FTHOST_ABI_MAJOR, FTHOST_ABI_MINOR, FT_KIND_GRADER, (flags), (name),     \
        (version), (description), nullptr, ::fthost::detail::option_ptr(options),                         \
        ::fthost::detail::option_count(options), &::fthost::detail::GraderThunks<Class>::vtable,        \
        ::fthost::detail::validate_fn<Class>()}

// Exports the library's one entry point listing its plugins: FTHOST_PLUGINS(a, b)
// for descriptors declared as fthost_desc_a, fthost_desc_b.
#define FTHOST_DETAIL_ADDR(x) &fthost_desc_##x
#define FTHOST_DETAIL_MAP1(x) FTHOST_DETAIL_ADDR(x)
#define FTHOST_DETAIL_MAP2(x, y) FTHOST_DETAIL_ADDR(x), FTHOST_DETAIL_ADDR(y)
#define FTHOST_DETAIL_MAP3(x, y, z) FTHOST_DETAIL_ADDR(x), FTHOST_DETAIL_ADDR(y), FTHOST_DETAIL_ADDR(z)
#define FTHOST_DETAIL_MAP4(x, y, z, w) FTHOST_DETAIL_MAP2(x, y), FTHOST_DETAIL_MAP2(z, w)
#define FTHOST_DETAIL_PICK(_1, _2, _3, _4, NAME, ...) NAME
#define FTHOST_PLUGINS(...)                                                                               \
    extern "C" FTHOST_EXPORT const ft_plugin_desc* const* fthost_plugins_v1(uint32_t* count) {           \
        static const ft_plugin_desc* const list[] = {FTHOST_DETAIL_PICK(                                  \
            __VA_ARGS__, FTHOST_DETAIL_MAP4, FTHOST_DETAIL_MAP3, FTHOST_DETAIL_MAP2, FTHOST_DETAIL_MAP1)( \
            __VA_ARGS__)};                                                                                 \
        *count = sizeof(list) / sizeof(list[0]);                                                           \
        return list;                                                                                       \
    }
