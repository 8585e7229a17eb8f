#include "model/device.hpp"

#include <fthost/plugin.hpp>

#include <ATen/Context.h>

namespace fthost::host {

at::Device resolve_device(const std::string& device) {
    if (device == "cuda" && !at::hasCUDA()) throw Error("[run] device = \"cuda\" but no CUDA device is available", FT_ERR_CONFIG);
    if (device == "cuda" || (device == "auto" && at::hasCUDA())) return at::Device(at::kCUDA, 0);
    return at::Device(at::kCPU);
}

}  // namespace fthost::host
