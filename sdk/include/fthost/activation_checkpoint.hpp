// activation_checkpoint.hpp — activation checkpointing for model plugins: a block's
// forward runs without keeping its intermediate activations, and backward recomputes
// it (with gradients) from the block's saved input, trading one more forward of the
// block for its activations' memory. The host turns it on per stage
// (`[stage.train] activation_checkpointing = true`) for models that declare
// `static constexpr bool supports_activation_checkpointing = true;` and read
// `activation_checkpointing()` (plugins/models/decoder is the example).
//
// The recomputation replays the random numbers the first pass drew (dropout inside the
// block: the CPU generator's state, and the CUDA one's for CUDA inputs), so gradients
// equal the un-checkpointed ones exactly, and the streams continue as if the block had
// run once. The block is a plain function of (owner, index, inputs): owner (the model)
// must outlive the backward pass; inputs[0] is the block's differentiable input, the
// rest are constants (rotary tables, masks; may be undefined). Parameters the block uses
// receive their gradients as leaves do in any backward.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

namespace fthost {

using CheckpointedBlock = at::Tensor (*)(void* owner, int64_t index, const std::vector<at::Tensor>& inputs);

class ActivationCheckpoint : public torch::autograd::Function<ActivationCheckpoint> {
public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& c1,
                              const at::Tensor& c2, const at::Tensor& c3, int64_t fn, int64_t owner, int64_t index) {
        ctx->save_for_backward({x, c1, c2, c3});
        ctx->saved_data["fn"] = fn;
        ctx->saved_data["owner"] = owner;
        ctx->saved_data["index"] = index;
        ctx->saved_data["cpu_rng"] = at::detail::getDefaultCPUGenerator().get_state();
        // The recomputation runs under the same autocast as the first pass.
        ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(x.device().type());
        ctx->saved_data["autocast_dtype"] = at::autocast::get_autocast_dtype(x.device().type());
        if (x.is_cuda())
            ctx->saved_data["cuda_rng"] =
                at::detail::getCUDAHooks().getDefaultGenerator(x.get_device()).get_state();
        // Grad mode is off here: nothing inside the block is kept for backward.
        return call(fn, owner, index, {x, c1, c2, c3});
    }

    static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        at::Tensor x = saved[0].detach().requires_grad_(true);
        // Replay the first pass's random numbers, then continue the streams where they were.
        at::Generator cpu = at::detail::getDefaultCPUGenerator();
        const at::Tensor cpu_now = cpu.get_state();
        cpu.set_state(ctx->saved_data["cpu_rng"].toTensor());
        at::Tensor cuda_now;
        if (x.is_cuda()) {
            at::Generator cuda = at::detail::getCUDAHooks().getDefaultGenerator(x.get_device());
            cuda_now = cuda.get_state();
            cuda.set_state(ctx->saved_data["cuda_rng"].toTensor());
        }
        at::Tensor out;
        {
            at::AutoGradMode enable(true);
            const at::DeviceType type = x.device().type();
            const bool was = at::autocast::is_autocast_enabled(type);
            const at::ScalarType was_dtype = at::autocast::get_autocast_dtype(type);
            const bool autocast = ctx->saved_data["autocast"].toBool();
            if (autocast) {
                at::autocast::set_autocast_enabled(type, true);
                at::autocast::set_autocast_dtype(type, ctx->saved_data["autocast_dtype"].toScalarType());
                at::autocast::increment_nesting();
            }
            out = call(ctx->saved_data["fn"].toInt(), ctx->saved_data["owner"].toInt(), ctx->saved_data["index"].toInt(),
                       {x, saved[1], saved[2], saved[3]});
            if (autocast) {
                if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
                at::autocast::set_autocast_enabled(type, was);
                at::autocast::set_autocast_dtype(type, was_dtype);
            }
        }
        cpu.set_state(cpu_now);
        if (x.is_cuda()) {
            at::Generator cuda = at::detail::getCUDAHooks().getDefaultGenerator(x.get_device());
            cuda.set_state(cuda_now);
        }
        torch::autograd::backward({out}, {grads[0]});
        return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }

private:
    static at::Tensor call(int64_t fn, int64_t owner, int64_t index, const std::vector<at::Tensor>& inputs) {
        return reinterpret_cast<CheckpointedBlock>(fn)(reinterpret_cast<void*>(owner), index, inputs);
    }
};

// block(owner, index, {x, c1, c2, c3}) with its activations recomputed in backward.
// Without gradients (eval, generation) it is a plain call.
inline at::Tensor checkpointed(CheckpointedBlock block, void* owner, int64_t index, const at::Tensor& x,
                               const at::Tensor& c1 = {}, const at::Tensor& c2 = {}, const at::Tensor& c3 = {}) {
    if (!at::GradMode::is_enabled()) return block(owner, index, {x, c1, c2, c3});
    // An input without a gradient (the first block over a frozen embedding) still needs
    // the backward to run, for the parameters inside the block (adapters).
    const at::Tensor in = x.requires_grad() ? x : x.detach().requires_grad_(true);
    return ActivationCheckpoint::apply(in, c1, c2, c3, reinterpret_cast<int64_t>(block), reinterpret_cast<int64_t>(owner),
                                       index);
}

}  // namespace fthost
