// build_info.hpp — what this fthost build is: its version and commit, the plugin ABI it
// speaks, the LibTorch it was built against and the one loaded now, CPU or CUDA (with
// CUDA's and NCCL's versions), the compiler. One source for `fthost --version`,
// `fthost doctor` and every run's manifest.json.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace fthost::host {

struct BuildInfo {
    std::string version;        // fthost's (the CMake project version)
    std::string git_commit;     // the source's commit, or "unknown"
    std::string abi;            // the plugin ABI, major.minor
    std::string torch_built;    // the LibTorch version compiled against (major.minor.patch)
    std::string torch_lib_dir;  // where the build found LibTorch's libraries
    std::string torch_loaded;   // the folder of the libtorch_cpu.so loaded now
    bool cuda = false;          // CUDA code compiled in
    std::string cuda_version;   // LibTorch's CUDA (empty on a CPU build)
    std::string nccl_version;   // the NCCL loaded now (empty when none is)
    std::string compiler;       // id and version
    std::string build_type;     // CMake's (Release, ...)
};

const BuildInfo& build_info();
nlohmann::json build_info_json();
// `fthost --version`: one line per fact.
std::string version_text();

}  // namespace fthost::host
