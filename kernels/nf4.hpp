// nf4.hpp — 4-bit NormalFloat storage as bitsandbytes defines it (QLoRA paper; bnb's
// functional.quantize_4bit with quant_type="nf4"):
//   * the weight, flattened row-major, is cut into blocks of `blocksize` (64) elements,
//     the last one possibly short; each block keeps absmax_b = max|w| in fp32;
//   * each element becomes the index of the nearest of 16 code values (kNf4Code) to
//     clamp(w / absmax_b, -1, 1); a value on a midpoint takes the lower index;
//   * two indices per byte, the first element in the HIGH nibble: byte k =
//     (q[2k] << 4) | q[2k+1]; an odd count pads the last low nibble with the code of 0.0 (index 7).
// Full blocks scale by multiplying with 1 / absmax_b, a short tail block divides by its
// absmax — as bnb's reference does, so the codes are bit-identical to its.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace fthost::kernels {

// bitsandbytes' NF4 code table (the quantiles of N(0, 1) normalised to [-1, 1]).
inline constexpr float kNf4Code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
    1.0f};

// Decision thresholds between neighbouring codes, computed in fp32 as (c[i] + c[i+1]) / 2.
inline float nf4_midpoint(int i) { return (kNf4Code[i] + kNf4Code[i + 1]) / 2.0f; }

// The index of the nearest code to u in [-1, 1] (ties to the lower index): the number
// of midpoints strictly below u.
inline uint8_t nf4_index(float u, const float* midpoints) {
    uint8_t q = 0;
    for (int i = 0; i < 15; ++i) q += midpoints[i] < u ? 1 : 0;
    return q;
}

// Blocks are an even number of elements, so no byte straddles two blocks.
inline void check_blocksize(int64_t blocksize) {
    TORCH_CHECK(blocksize > 0 && blocksize % 2 == 0, "fthost::nf4: blocksize must be even and positive, got ", blocksize);
}

// The packed codes and absmax hold exactly the `n` elements of `shape` in blocks.
inline void check_dequantize_args(const at::Tensor& packed, const at::Tensor& absmax, at::IntArrayRef shape,
                                  int64_t blocksize) {
    const int64_t n = c10::multiply_integers(shape);
    check_blocksize(blocksize);
    TORCH_CHECK(packed.scalar_type() == at::kByte, "fthost::nf4_dequantize: packed codes must be uint8");
    TORCH_CHECK(packed.numel() == (n + 1) / 2, "fthost::nf4_dequantize: ", packed.numel(), " packed bytes for a ",
                shape, " weight (needs ", (n + 1) / 2, ")");
    TORCH_CHECK(absmax.numel() == (n + blocksize - 1) / blocksize, "fthost::nf4_dequantize: ", absmax.numel(),
                " absmax values for ", n, " elements in blocks of ", blocksize);
}

// packed: uint8 [(n + 1) / 2]; absmax: float32 [ceil(n / blocksize)].
std::tuple<at::Tensor, at::Tensor> nf4_quantize_cpu(const at::Tensor& weight, int64_t blocksize);
// The weight of `shape` in `dtype`: code * absmax in fp32, cast once.
at::Tensor nf4_dequantize_cpu(const at::Tensor& packed, const at::Tensor& absmax, at::IntArrayRef shape,
                              at::ScalarType dtype, int64_t blocksize);

}  // namespace fthost::kernels
