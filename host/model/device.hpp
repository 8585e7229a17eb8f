// device.hpp — the one place a config's device string becomes a LibTorch device.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace fthost::host {

// cpu, cuda, or auto (cuda when available); "cuda" without a device is a config error.
// A distributed run's rank binds the GPU of its local rank (LOCAL_RANK): cuda:<local_rank>.
at::Device resolve_device(const std::string& device, int local_rank = 0);

}  // namespace fthost::host
