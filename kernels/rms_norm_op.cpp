// fthost::rms_norm — RMSNorm as Hugging Face's LlamaRMSNorm computes it:
//   y = w * cast_to_input_dtype( x * rsqrt(mean(x^2) + eps) )   (statistics in fp32 or wider)
// as one fused pass forward and one backward, with a CPU reference (cpu/) and a CUDA
// implementation (cuda/). This file declares the operators and their autograd.
#include "rms_norm.hpp"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

namespace fthost::kernels {
namespace {

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                              double eps) {
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fthost::rms_norm_forward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double)>();
        auto [y, rstd] = op.call(x, w, eps);
        ctx->save_for_backward({x, w, rstd});
        return y;
    }
    static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::tensor_list grads) {
        static auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fthost::rms_norm_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                       const at::Tensor&, const at::Tensor&)>();
        auto saved = ctx->get_saved_variables();
        auto [gx, gw] = op.call(grads[0].contiguous(), saved[0], saved[1], saved[2]);
        return {gx, gw, at::Tensor()};
    }
};

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
    TORCH_CHECK(x.size(-1) == w.numel(), "fthost::rms_norm: weight has ", w.numel(), " elements, input's last dim is ",
                x.size(-1));
    return RmsNormFunction::apply(x.contiguous(), w.contiguous(), eps);
}

}  // namespace

TORCH_LIBRARY(fthost, m) {
    m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor", &rms_norm);
    m.def("rms_norm_forward(Tensor x, Tensor weight, float eps) -> (Tensor, Tensor)");
    m.def("rms_norm_backward(Tensor grad, Tensor x, Tensor weight, Tensor rstd) -> (Tensor, Tensor)");
}

}  // namespace fthost::kernels
