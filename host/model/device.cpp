#include "model/device.hpp"

#include <fthost/plugin.hpp>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

namespace fthost::host {

at::Device resolve_device(const std::string& device, int local_rank) {
    if (device == "cuda" && !at::hasCUDA()) throw Error("[run] device = \"cuda\" but no CUDA device is available", FT_ERR_CONFIG);
    if (device == "cuda" || (device == "auto" && at::hasCUDA())) {
        const int count = static_cast<int>(at::detail::getCUDAHooks().getNumGPUs());
        if (local_rank >= count)
            throw Error("local rank " + std::to_string(local_rank) + " needs GPU " + std::to_string(local_rank) + ", but " +
                            std::to_string(count) + " CUDA device(s) are visible: start at most " + std::to_string(count) +
                            " ranks per machine (--nproc-per-node) or set CUDA_VISIBLE_DEVICES",
                        FT_ERR_CONFIG);
        return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
    }
    return at::Device(at::kCPU);
}

}  // namespace fthost::host
