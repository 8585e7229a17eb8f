// adamw.hpp — AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias
// correction), through LibTorch's fused kernel on CPU and CUDA. Weight decay is never
// applied to 1-D tensors: norms and biases. A parameter narrower than float32 (full's
// weight_dtype bfloat16) gets a float32 master copy with its moments: the update is made
// on the master, from the gradient widened, and rounded into the parameter.
#pragma once

#include "io/safetensors.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

namespace fthost::host {

// Whether `p` trains through a float32 master copy (bf16 / fp16 parameters).
bool needs_master(const at::Tensor& p);

struct AdamWOptions {
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
public:
    // `owned` (one flag per parameter, empty = all): the parameters whose moments this
    // process keeps and updates — ZeRO-1 shards them over the ranks of a distributed run;
    // the others get no state and step() leaves them to their owner.
    AdamW(TensorList params, AdamWOptions opts, std::vector<bool> owned = {});
    void step(double lr);  // parameters without a gradient, or not owned, are skipped
    void zero_grad();
    // Global L2 norm of all gradients, then scales them to max_norm if above it.
    double clip_grad_norm(double max_norm);

    // exp_avg.<name>, exp_avg_sq.<name>, step.<name> (and master.<name> where
    // needs_master) of the owned parameters.
    TensorList state() const;
    // The owned parameters' entries (the others in `state` are ignored).
    void load_state(const std::map<std::string, at::Tensor>& state);

private:
    struct Slot {
        std::string name;
        at::Tensor param, exp_avg, exp_avg_sq, step;  // moments and step undefined when not owned
        at::Tensor master;                            // float32 copy of a narrower owned parameter
        bool decay;
        bool owned;
    };
    std::vector<Slot> slots_;
    AdamWOptions opts_;
};

// Linear warmup from 0 to lr over warmup steps, then cosine decay to lr * min_ratio.
double scheduled_lr(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_ratio);

}  // namespace fthost::host
