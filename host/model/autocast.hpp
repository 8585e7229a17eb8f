// autocast.hpp — bf16 mixed precision for a scope: matmuls, attention (the flash path of
// scaled_dot_product_attention on CUDA) and the other ops LibTorch's autocast lists run
// in bfloat16, while parameters, gradients and AdamW's state stay fp32 (the master
// weights), and the host's log-probs are taken in fp32. `[run] precision = "bf16"`;
// "fp32" (the default) computes everything in fp32, as the parity tests require. The
// scope covers the forward pass and the loss; backward replays the dtypes it recorded.
#pragma once

#include <ATen/autocast_mode.h>
#include <c10/core/Device.h>

namespace fthost::host {

class AutocastScope {
public:
    AutocastScope(at::Device device, bool bf16) : type_(device.type()), active_(bf16) {
        if (!active_) return;
        was_enabled_ = at::autocast::is_autocast_enabled(type_);
        was_dtype_ = at::autocast::get_autocast_dtype(type_);
        at::autocast::set_autocast_enabled(type_, true);
        at::autocast::set_autocast_dtype(type_, at::kBFloat16);
        at::autocast::increment_nesting();
    }
    ~AutocastScope() {
        if (!active_) return;
        // Leaving the outermost scope drops the casts of weights autocast cached.
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_autocast_enabled(type_, was_enabled_);
        at::autocast::set_autocast_dtype(type_, was_dtype_);
    }
    AutocastScope(const AutocastScope&) = delete;
    AutocastScope& operator=(const AutocastScope&) = delete;

private:
    at::DeviceType type_;
    bool active_, was_enabled_ = false;
    at::ScalarType was_dtype_ = at::kBFloat16;
};

}  // namespace fthost::host
