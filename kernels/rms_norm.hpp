// rms_norm.hpp — the device kernels behind fthost::rms_norm_forward / _backward.
// Inputs are contiguous, normalised over the last dimension; rstd is float32 (double
// for double inputs), one value per row.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace fthost::kernels {

std::tuple<at::Tensor, at::Tensor> rms_norm_forward_cpu(const at::Tensor& x, const at::Tensor& w, double eps);
std::tuple<at::Tensor, at::Tensor> rms_norm_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                         const at::Tensor& w, const at::Tensor& rstd);

}  // namespace fthost::kernels
