// adamw.hpp — AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias
// correction), through LibTorch's fused kernel on CPU and CUDA. Weight decay is never
// applied to 1-D tensors: norms and biases.
#pragma once

#include "io/safetensors.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace fthost::host {

struct AdamWOptions {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
public:
    AdamW(TensorList params, AdamWOptions opts);
    void step(double lr);  // parameters without a gradient are skipped
    void zero_grad();
    // Global L2 norm of all gradients, then scales them to max_norm if above it.
    double clip_grad_norm(double max_norm);

    // exp_avg.<name>, exp_avg_sq.<name>, step.<name>
    TensorList state() const;
    void load_state(const std::map<std::string, at::Tensor>& state);

private:
    struct Slot {
        std::string name;
        at::Tensor param, exp_avg, exp_avg_sq, step;
        bool decay;
    };
    std::vector<Slot> slots_;
    AdamWOptions opts_;
};

// Linear warmup from 0 to lr over warmup steps, then cosine decay to lr * min_ratio.
double scheduled_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_ratio);

}  // namespace fthost::host
