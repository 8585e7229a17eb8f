// CPU reference for fthost::rms_norm: one row at a time, statistics in the op-math type
// (float for half/bfloat16/float, double for double), rows in parallel.
#include "rms_norm.hpp"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

namespace fthost::kernels {

std::tuple<at::Tensor, at::Tensor> rms_norm_forward_cpu(const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
    const at::Tensor x = x_in.contiguous(), w = w_in.contiguous().to(x.scalar_type());
    const int64_t H = x.size(-1), rows = x.numel() / H;
    at::Tensor y = at::empty_like(x);
    const auto stat_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor rstd = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(stat_type));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rms_norm_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        const scalar_t* wp = w.const_data_ptr<scalar_t>();
        scalar_t* yp = y.mutable_data_ptr<scalar_t>();
        acc_t* rp = rstd.mutable_data_ptr<acc_t>();
        at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const scalar_t* xr = xp + r * H;
                acc_t ss = 0;
                for (int64_t i = 0; i < H; ++i) ss += static_cast<acc_t>(xr[i]) * static_cast<acc_t>(xr[i]);
                const acc_t inv = acc_t(1) / std::sqrt(ss / static_cast<acc_t>(H) + static_cast<acc_t>(eps));
                rp[r] = inv;
                for (int64_t i = 0; i < H; ++i)
                    yp[r * H + i] = wp[i] * static_cast<scalar_t>(static_cast<acc_t>(xr[i]) * inv);
            }
        });
    });
    return {y, rstd};
}

std::tuple<at::Tensor, at::Tensor> rms_norm_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                         const at::Tensor& w_in, const at::Tensor& rstd) {
    const at::Tensor g = grad_in.contiguous(), x = x_in.contiguous(), w = w_in.contiguous().to(x.scalar_type());
    const int64_t H = x.size(-1), rows = x.numel() / H;
    at::Tensor gx = at::empty_like(x);
    const auto stat_type = rstd.scalar_type();
    // Per-row partial sums for dw, reduced afterwards: no races, deterministic.
    at::Tensor gw_rows = at::empty({rows, H}, x.options().dtype(stat_type));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "rms_norm_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* wp = w.const_data_ptr<scalar_t>();
        const acc_t* rp = rstd.const_data_ptr<acc_t>();
        scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
        acc_t* gwp = gw_rows.mutable_data_ptr<acc_t>();
        at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
            for (int64_t r = begin; r < end; ++r) {
                const acc_t inv = rp[r];
                acc_t dot = 0;  // sum_i (dy_i w_i) * xhat_i
                for (int64_t i = 0; i < H; ++i) {
                    const acc_t xhat = static_cast<acc_t>(xp[r * H + i]) * inv;
                    const acc_t dy = static_cast<acc_t>(gp[r * H + i]);
                    dot += dy * static_cast<acc_t>(wp[i]) * xhat;
                    gwp[r * H + i] = dy * xhat;
                }
                const acc_t mean_dot = dot / static_cast<acc_t>(H);
                for (int64_t i = 0; i < H; ++i) {
                    const acc_t xhat = static_cast<acc_t>(xp[r * H + i]) * inv;
                    const acc_t dxhat = static_cast<acc_t>(gp[r * H + i]) * static_cast<acc_t>(wp[i]);
                    gxp[r * H + i] = static_cast<scalar_t>(inv * (dxhat - xhat * mean_dot));
                }
            }
        });
    });
    return {gx, gw_rows.sum(0).to(w_in.scalar_type())};
}

TORCH_LIBRARY_IMPL(fthost, CPU, m) {
    m.impl("rms_norm_forward", &rms_norm_forward_cpu);
    m.impl("rms_norm_backward", &rms_norm_backward_cpu);
}

}  // namespace fthost::kernels
