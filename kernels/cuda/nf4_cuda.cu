// CUDA implementation of fthost::nf4_quantize / nf4_dequantize, bit-identical to the CPU
// reference (nf4.hpp): every product and quotient is a single IEEE fp32 operation, so
// there is nothing for the compiler to fuse differently.
//   quantize:   one warp per quantisation block; lanes reduce absmax with shuffles, then
//               each lane writes whole bytes (element pairs) of its block.
//   dequantize: one thread per packed byte, two outputs each, cast to the output dtype.
#include "nf4.hpp"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace fthost::kernels {
namespace {

// The code table and its midpoints travel as a kernel argument (parameter space is
// constant memory on every device; nothing to upload per device).
struct Nf4Tables {
    float code[16];
    float mid[15];
};

Nf4Tables tables() {
    Nf4Tables t{};
    for (int i = 0; i < 16; ++i) t.code[i] = kNf4Code[i];
    for (int i = 0; i < 15; ++i) t.mid[i] = nf4_midpoint(i);
    return t;
}

__device__ __forceinline__ uint8_t nearest(const Nf4Tables& t, float u) {
    uint8_t q = 0;
#pragma unroll
    for (int i = 0; i < 15; ++i) q += t.mid[i] < u ? 1 : 0;
    return q;
}

__global__ void quantize_kernel(const Nf4Tables t, const float* w, uint8_t* packed, float* absmax, int64_t n, int64_t blocksize,
                                int64_t blocks) {
    const int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (b >= blocks) return;  // whole warps leave together: b is uniform across a warp
    const int64_t lo = b * blocksize, hi = min(n, lo + blocksize);
    float m = 0.0f;
    for (int64_t i = lo + lane; i < hi; i += 32) m = fmaxf(m, fabsf(w[i]));
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    const float a = fmaxf(m, 1e-38f);
    const bool tail = hi - lo < blocksize;
    if (lane == 0) absmax[b] = tail ? a : m;
    const float inv = __frcp_rn(a);
    for (int64_t i = lo + 2 * lane; i < hi; i += 64) {
        const float u0 = fminf(fmaxf(tail ? __fdiv_rn(w[i], a) : __fmul_rn(w[i], inv), -1.0f), 1.0f);
        uint8_t byte = static_cast<uint8_t>(nearest(t, u0) << 4);
        const float u1 = i + 1 < hi ? fminf(fmaxf(tail ? __fdiv_rn(w[i + 1], a) : __fmul_rn(w[i + 1], inv), -1.0f), 1.0f)
                                    : 0.0f;  // an odd count pads with the value 0
        byte |= nearest(t, u1);
        packed[i / 2] = byte;
    }
}

template <typename scalar_t>
__global__ void dequantize_kernel(const Nf4Tables t, const uint8_t* packed, const float* absmax, scalar_t* out, int64_t n,
                                  int64_t blocksize) {
    const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (2 * k >= n) return;
    const uint8_t byte = packed[k];
    out[2 * k] = static_cast<scalar_t>(__fmul_rn(t.code[byte >> 4], absmax[(2 * k) / blocksize]));
    if (2 * k + 1 < n) out[2 * k + 1] = static_cast<scalar_t>(__fmul_rn(t.code[byte & 0xF], absmax[(2 * k + 1) / blocksize]));
}

std::tuple<at::Tensor, at::Tensor> nf4_quantize_cuda(const at::Tensor& weight, int64_t blocksize) {
    const c10::cuda::CUDAGuard guard(weight.device());
    check_blocksize(blocksize);
    const at::Tensor w = weight.contiguous().to(at::kFloat).view(-1);
    const int64_t n = w.numel(), blocks = (n + blocksize - 1) / blocksize;
    at::Tensor packed = at::zeros({(n + 1) / 2}, w.options().dtype(at::kByte));
    at::Tensor absmax = at::empty({blocks}, w.options());
    if (blocks == 0) return {packed, absmax};
    constexpr int kThreads = 256;  // 8 warps = 8 quantisation blocks per thread block
    const int64_t grid = (blocks * 32 + kThreads - 1) / kThreads;
    quantize_kernel<<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        tables(), w.const_data_ptr<float>(), packed.mutable_data_ptr<uint8_t>(), absmax.mutable_data_ptr<float>(), n, blocksize,
        blocks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {packed, absmax};
}

at::Tensor nf4_dequantize_cuda(const at::Tensor& packed_in, const at::Tensor& absmax_in, at::IntArrayRef shape,
                               at::ScalarType dtype, int64_t blocksize) {
    const c10::cuda::CUDAGuard guard(packed_in.device());
    const at::Tensor packed = packed_in.contiguous(), absmax = absmax_in.contiguous().to(at::kFloat);
    const int64_t n = c10::multiply_integers(shape);
    check_dequantize_args(packed, absmax, shape, blocksize);
    at::Tensor out = at::empty(shape, packed.options().dtype(dtype));
    if (n == 0) return out;
    constexpr int kThreads = 256;
    const int64_t grid = (packed.numel() + kThreads - 1) / kThreads;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "nf4_dequantize_cuda", [&] {
        dequantize_kernel<scalar_t><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            tables(), packed.const_data_ptr<uint8_t>(), absmax.const_data_ptr<float>(), out.mutable_data_ptr<scalar_t>(), n,
            blocksize);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fthost, CUDA, m) {
    m.impl("nf4_quantize", &nf4_quantize_cuda);
    m.impl("nf4_dequantize", &nf4_dequantize_cuda);
}

}  // namespace fthost::kernels
