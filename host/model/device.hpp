// device.hpp — the one place a config's device string becomes a LibTorch device.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace fthost::host {

// cpu, cuda, or auto (cuda when available); "cuda" without a device is a config error.
at::Device resolve_device(const std::string& device);

}  // namespace fthost::host
