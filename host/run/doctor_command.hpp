// doctor_command.hpp — `fthost doctor`: checks what a run needs on this machine and says
// what is wrong in words a user can act on: this build and the LibTorch it loaded, CUDA
// devices and their memory, the Gloo and NCCL collectives (a one-process all-reduce),
// every plugin on the search path (refusals listed), the program grader's sandbox (one
// real graded call), and the free disk where runs go.
#pragma once

#include "registry/plugin_registry.hpp"

#include <string>

namespace fthost::host {

struct DoctorRequest {
    std::string output_dir = "runs";  // where runs will be written (its nearest existing folder is measured)
};

// Prints one line per check ("ok", "warn" or "FAIL"); returns 0 when nothing failed, 1 otherwise.
int doctor_command(const DoctorRequest& req, const PluginRegistry& registry);

}  // namespace fthost::host
