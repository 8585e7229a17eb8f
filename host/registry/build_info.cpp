#include "registry/build_info.hpp"

#include <fthost/fthost.h>

#include <torch/version.h>

#include <dlfcn.h>

#include <filesystem>

#ifndef FTHOST_VERSION
#define FTHOST_VERSION "0.0.0"
#endif
#ifndef FTHOST_GIT_COMMIT
#define FTHOST_GIT_COMMIT "unknown"
#endif
#ifndef FTHOST_TORCH_LIB_DIR
#define FTHOST_TORCH_LIB_DIR ""
#endif
#ifndef FTHOST_CUDA_VERSION
#define FTHOST_CUDA_VERSION ""
#endif
#ifndef FTHOST_BUILD_TYPE
#define FTHOST_BUILD_TYPE ""
#endif

namespace fthost::host {
namespace {

std::string compiler() {
#if defined(__clang__)
    return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    return std::string("gcc ") + __VERSION__;
#else
    return "unknown";
#endif
}

// The folder of the loaded library that defines `symbol` ("" when none does).
std::string folder_of_symbol(const char* symbol) {
    void* p = dlsym(RTLD_DEFAULT, symbol);
    Dl_info info{};
    if (!p || !dladdr(p, &info) || !info.dli_fname) return "";
    std::error_code ec;
    const auto path = std::filesystem::weakly_canonical(info.dli_fname, ec);
    return (ec ? std::filesystem::path(info.dli_fname) : path).parent_path().string();
}

// NCCL's version as the library loaded with libtorch_cuda reports it: major.minor.patch.
std::string loaded_nccl_version() {
    using GetVersion = int (*)(int*);
    auto get = reinterpret_cast<GetVersion>(dlsym(RTLD_DEFAULT, "ncclGetVersion"));
    int v = 0;
    if (!get || get(&v) != 0 || v <= 0) return "";
    // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

BuildInfo make() {
    BuildInfo b;
    b.version = FTHOST_VERSION;
    b.git_commit = FTHOST_GIT_COMMIT;
    b.abi = std::to_string(FTHOST_ABI_MAJOR) + "." + std::to_string(FTHOST_ABI_MINOR);
    b.torch_built = TORCH_VERSION;
    b.torch_lib_dir = FTHOST_TORCH_LIB_DIR;
    // A C++ symbol of libtorch_cpu every build exports (at::get_num_threads).
    b.torch_loaded = folder_of_symbol("_ZN2at15get_num_threadsEv");
#ifdef FTHOST_WITH_CUDA
    b.cuda = true;
#endif
    b.cuda_version = FTHOST_CUDA_VERSION;
    b.nccl_version = loaded_nccl_version();
    b.compiler = compiler();
    b.build_type = FTHOST_BUILD_TYPE;
    return b;
}

}  // namespace

const BuildInfo& build_info() {
    static const BuildInfo info = make();
    return info;
}

nlohmann::json build_info_json() {
    const BuildInfo& b = build_info();
    return {{"version", b.version},         {"git_commit", b.git_commit},   {"abi", b.abi},
            {"torch", b.torch_built},       {"torch_loaded_from", b.torch_loaded},
            {"cuda", b.cuda ? nlohmann::json(b.cuda_version) : nlohmann::json(nullptr)},
            {"nccl", b.nccl_version.empty() ? nlohmann::json(nullptr) : nlohmann::json(b.nccl_version)},
            {"compiler", b.compiler},       {"build_type", b.build_type}};
}

std::string version_text() {
    const BuildInfo& b = build_info();
    std::string s = "fthost " + b.version + " (commit " + b.git_commit + ")\n";
    s += "plugin ABI " + b.abi + "\n";
    s += "LibTorch " + b.torch_built + (b.torch_loaded.empty() ? "" : ", loaded from " + b.torch_loaded) + "\n";
    if (b.cuda)
        s += "CUDA build (CUDA " + (b.cuda_version.empty() ? std::string("?") : b.cuda_version) + ", NCCL " +
             (b.nccl_version.empty() ? std::string("not loaded") : b.nccl_version) + ")\n";
    else
        s += "CPU build (no CUDA code compiled)\n";
    s += "compiler " + b.compiler + (b.build_type.empty() ? "" : ", " + b.build_type) + "\n";
    return s;
}

}  // namespace fthost::host
