// CUDA implementation of fthost::rms_norm: one block per row, the sum of squares (and,
// backward, the row's dot product) reduced in shared memory, statistics in float
// (double for double). dw is reduced over rows by ATen from per-row products.
#include "rms_norm.hpp"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace fthost::kernels {
namespace {

constexpr int kThreads = 256;

template <typename acc_t>
__device__ acc_t block_sum(acc_t v, acc_t* shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    const acc_t total = shared[0];
    __syncthreads();
    return total;
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* x, const scalar_t* w, scalar_t* y, acc_t* rstd, int64_t H, acc_t eps) {
    __shared__ acc_t shared[kThreads];
    const int64_t row = blockIdx.x;
    const scalar_t* xr = x + row * H;
    acc_t ss = 0;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += static_cast<acc_t>(xr[i]) * static_cast<acc_t>(xr[i]);
    const acc_t inv = rsqrt(block_sum(ss, shared) / static_cast<acc_t>(H) + eps);
    if (threadIdx.x == 0) rstd[row] = inv;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        y[row * H + i] = w[i] * static_cast<scalar_t>(static_cast<acc_t>(xr[i]) * inv);
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* g, const scalar_t* x, const scalar_t* w, const acc_t* rstd,
                                scalar_t* gx, acc_t* gw_rows, int64_t H) {
    __shared__ acc_t shared[kThreads];
    const int64_t row = blockIdx.x;
    const acc_t inv = rstd[row];
    acc_t dot = 0;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
        const acc_t xhat = static_cast<acc_t>(x[row * H + i]) * inv;
        const acc_t dy = static_cast<acc_t>(g[row * H + i]);
        dot += dy * static_cast<acc_t>(w[i]) * xhat;
        gw_rows[row * H + i] = dy * xhat;
    }
    const acc_t mean_dot = block_sum(dot, shared) / static_cast<acc_t>(H);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
        const acc_t xhat = static_cast<acc_t>(x[row * H + i]) * inv;
        const acc_t dxhat = static_cast<acc_t>(g[row * H + i]) * static_cast<acc_t>(w[i]);
        gx[row * H + i] = static_cast<scalar_t>(inv * (dxhat - xhat * mean_dot));
    }
}

std::tuple<at::Tensor, at::Tensor> rms_norm_forward_cuda(const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const at::Tensor x = x_in.contiguous(), w = w_in.contiguous().to(x.scalar_type());
    const int64_t H = x.size(-1), rows = x.numel() / H;
    at::Tensor y = at::empty_like(x);
    const auto stat_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor rstd = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(stat_type));
    if (rows == 0) return {y, rstd};
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rms_norm_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        forward_kernel<scalar_t, acc_t><<<rows, kThreads, 0, stream>>>(
            x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
            rstd.mutable_data_ptr<acc_t>(), H, static_cast<acc_t>(eps));
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {y, rstd};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                          const at::Tensor& w_in, const at::Tensor& rstd) {
    const c10::cuda::CUDAGuard guard(x_in.device());
    const at::Tensor g = grad_in.contiguous(), x = x_in.contiguous(), w = w_in.contiguous().to(x.scalar_type());
    const int64_t H = x.size(-1), rows = x.numel() / H;
    at::Tensor gx = at::empty_like(x);
    at::Tensor gw_rows = at::empty({rows, H}, x.options().dtype(rstd.scalar_type()));
    if (rows > 0) {
        auto stream = at::cuda::getCurrentCUDAStream();
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rms_norm_backward_cuda", [&] {
            using acc_t = at::opmath_type<scalar_t>;
            backward_kernel<scalar_t, acc_t><<<rows, kThreads, 0, stream>>>(
                g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                rstd.const_data_ptr<acc_t>(), gx.mutable_data_ptr<scalar_t>(), gw_rows.mutable_data_ptr<acc_t>(), H);
        });
        C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    return {gx, gw_rows.sum(0).to(w_in.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(fthost, CUDA, m) {
    m.impl("rms_norm_forward", &rms_norm_forward_cuda);
    m.impl("rms_norm_backward", &rms_norm_backward_cuda);
}

}  // namespace fthost::kernels
