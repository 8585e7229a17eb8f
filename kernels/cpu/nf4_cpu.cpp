// CPU reference for fthost::nf4_quantize / nf4_dequantize: one quantisation block at a
// time, blocks in parallel. Arithmetic in fp32 exactly as nf4.hpp describes.
#include "nf4.hpp"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

namespace fthost::kernels {

std::tuple<at::Tensor, at::Tensor> nf4_quantize_cpu(const at::Tensor& weight, int64_t blocksize) {
    check_blocksize(blocksize);
    const at::Tensor w = weight.contiguous().to(at::kFloat).view(-1);
    const int64_t n = w.numel(), blocks = (n + blocksize - 1) / blocksize;
    at::Tensor packed = at::zeros({(n + 1) / 2}, w.options().dtype(at::kByte));
    at::Tensor absmax = at::empty({blocks}, w.options());
    const float* wp = w.const_data_ptr<float>();
    uint8_t* pp = packed.mutable_data_ptr<uint8_t>();
    float* ap = absmax.mutable_data_ptr<float>();
    float mid[15];
    for (int i = 0; i < 15; ++i) mid[i] = nf4_midpoint(i);
    // blocksize is even, so a block never shares a byte with its neighbour.
    at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
            const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
            float m = 0.0f;
            for (int64_t i = lo; i < hi; ++i) m = std::max(m, std::fabs(wp[i]));
            const float a = std::max(m, 1e-38f);
            const bool tail = hi - lo < blocksize;
            ap[b] = tail ? a : m;  // bnb stores the short block's divisor, clamped
            const float inv = 1.0f / a;
            for (int64_t i = lo; i < hi; ++i) {
                const float u = std::clamp(tail ? wp[i] / a : wp[i] * inv, -1.0f, 1.0f);
                const uint8_t q = nf4_index(u, mid);
                pp[i / 2] |= (i % 2 == 0) ? static_cast<uint8_t>(q << 4) : q;
            }
            if (hi == n && n % 2 == 1) pp[n / 2] |= nf4_index(0.0f, mid);  // the pad value 0
        }
    });
    return {packed, absmax};
}

at::Tensor nf4_dequantize_cpu(const at::Tensor& packed_in, const at::Tensor& absmax_in, at::IntArrayRef shape,
                              at::ScalarType dtype, int64_t blocksize) {
    const at::Tensor packed = packed_in.contiguous(), absmax = absmax_in.contiguous().to(at::kFloat);
    const int64_t n = c10::multiply_integers(shape);
    check_dequantize_args(packed, absmax, shape, blocksize);
    at::Tensor out = at::empty({n}, packed.options().dtype(at::kFloat));
    const uint8_t* pp = packed.const_data_ptr<uint8_t>();
    const float* ap = absmax.const_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    // Block by block: one absmax per block, two outputs per byte (blocks are even, so a
    // byte never straddles two), no division or branch per element.
    const int64_t blocks = absmax.numel();
    at::parallel_for(0, blocks, 64, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
            const float a = ap[b];
            const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
            const int64_t pairs = (hi - lo) / 2;
            const uint8_t* src = pp + lo / 2;
            float* dst = op + lo;
            for (int64_t k = 0; k < pairs; ++k) {
                const uint8_t byte = src[k];
                dst[2 * k] = kNf4Code[byte >> 4] * a;
                dst[2 * k + 1] = kNf4Code[byte & 0xF] * a;
            }
            if ((hi - lo) % 2) dst[hi - lo - 1] = kNf4Code[src[pairs] >> 4] * a;  // odd tail
        }
    });
    return out.view(shape).to(dtype);
}

TORCH_LIBRARY_IMPL(fthost, CPU, m) {
    m.impl("nf4_quantize", &nf4_quantize_cpu);
    m.impl("nf4_dequantize", &nf4_dequantize_cpu);
}

}  // namespace fthost::kernels
