// fthost::nf4_* — QLoRA's 4-bit NormalFloat weights as operators (nf4.hpp has the format):
//   nf4_quantize(weight, blocksize)                      -> (packed uint8, absmax fp32)
//   nf4_dequantize(packed, absmax, shape, dtype, blocksize) -> weight
//   absmax_quantize(absmax, blocksize)                   -> (q8 uint8, scale fp32, offset fp32)
//   absmax_dequantize(q8, scale, offset, blocksize)      -> absmax fp32
//   nf4_linear(x, packed, absmax, shape, bias, blocksize) -> x W^T + b
// nf4_quantize / nf4_dequantize have a CPU reference (cpu/) and a CUDA kernel (cuda/).
// The absmax pair is bitsandbytes' double quantisation (compress_statistics): subtract
// the mean, then 8-bit blockwise quantisation against the signed dynamic map; it touches
// 1/64 of the elements, once at load and once per dequantisation, so it is written with
// ATen ops that run on any device. nf4_linear dequantises into x's dtype and multiplies;
// its backward dequantises again rather than keep the weight (that is the memory QLoRA
// saves) and gives gradients for x and the bias only: the 4-bit base is frozen.
#include "nf4.hpp"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <map>
#include <mutex>

namespace fthost::kernels {
namespace {

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for
// exponent i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) scaled by +-10^(i-6),
// then 0 and 1, sorted — 256 values in fp32, computed with the same fp32 ATen arithmetic.
const at::Tensor& dynamic_map_cpu() {
    static at::Tensor map;
    static std::once_flag once;
    std::call_once(once, [] {
        std::vector<at::Tensor> parts;
        for (int i = 0; i < 7; ++i) {
            const at::Tensor b = at::linspace(0.1, 1.0, (1 << i) + 1, at::kFloat);
            const at::Tensor means = (b.narrow(0, 0, 1 << i) + b.narrow(0, 1, 1 << i)) / 2.0;
            const double scale = std::pow(10.0, i - 6);
            parts.push_back(means * scale);
            parts.push_back(means * -scale);
        }
        parts.push_back(at::tensor({0.0f, 1.0f}));
        map = std::get<0>(at::sort(at::cat(parts)));
    });
    return map;
}

// The map on `device`, copied there once (it is read on every dequantisation).
at::Tensor dynamic_map(const at::Device& device) {
    if (device.is_cpu()) return dynamic_map_cpu();
    static std::mutex mutex;
    static std::map<std::pair<int, int>, at::Tensor> per_device;
    std::lock_guard<std::mutex> lock(mutex);
    at::Tensor& t = per_device[{static_cast<int>(device.type()), static_cast<int>(device.index())}];
    if (!t.defined()) t = dynamic_map_cpu().to(device);
    return t;
}

// bitsandbytes' reference quantize_blockwise on (absmax - mean): full blocks scale by
// multiplying with 1 / max|.|, a short tail block divides by its (clamped) max, which is
// also what it stores; each value takes the nearest map entry (ties to the lower).
std::tuple<at::Tensor, at::Tensor, at::Tensor> absmax_quantize(const at::Tensor& absmax, int64_t blocksize) {
    TORCH_CHECK(absmax.scalar_type() == at::kFloat, "fthost::absmax_quantize: absmax must be float32");
    TORCH_CHECK(blocksize > 0, "fthost::absmax_quantize: blocksize must be positive");
    const at::Tensor a = absmax.contiguous().view(-1);
    const int64_t n = a.numel(), full = n / blocksize * blocksize;
    const at::Tensor offset = a.mean();
    const at::Tensor centred = a - offset;
    std::vector<at::Tensor> scales, scaled;
    if (full > 0) {
        const at::Tensor blocks = centred.narrow(0, 0, full).view({-1, blocksize});
        const at::Tensor m = blocks.abs().amax(1);
        scales.push_back(m);
        scaled.push_back((blocks * (1.0 / m.clamp_min(1e-38)).unsqueeze(1)).clamp(-1, 1).view(-1));
    }
    if (n > full) {
        const at::Tensor tail = centred.narrow(0, full, n - full);
        const at::Tensor m = tail.abs().amax().clamp_min(1e-38);
        scales.push_back(m.unsqueeze(0));
        scaled.push_back((tail / m).clamp(-1, 1));
    }
    const at::Tensor map = dynamic_map(a.device());
    const at::Tensor mid = (map.narrow(0, 0, 255) + map.narrow(0, 1, 255)) / 2.0;
    const at::Tensor q8 = at::bucketize(at::cat(scaled), mid, /*out_int32=*/true).to(at::kByte);
    return {q8, at::cat(scales), offset};
}

at::Tensor absmax_dequantize(const at::Tensor& q8, const at::Tensor& scale, const at::Tensor& offset,
                             int64_t blocksize) {
    const int64_t n = q8.numel();
    TORCH_CHECK(scale.numel() == (n + blocksize - 1) / blocksize, "fthost::absmax_dequantize: ", scale.numel(),
                " scales for ", n, " values in blocks of ", blocksize);
    const at::Tensor values = dynamic_map(q8.device()).index({q8.view(-1).to(at::kLong)});
    const at::Tensor per_value = scale.repeat_interleave(blocksize).narrow(0, 0, n);
    return values * per_value + offset;
}

at::Tensor dequantize(const at::Tensor& packed, const at::Tensor& absmax, at::IntArrayRef shape, at::ScalarType dtype,
                      int64_t blocksize) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("fthost::nf4_dequantize", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::ScalarType, int64_t)>();
    return op.call(packed, absmax, shape, dtype, blocksize);
}

class Nf4LinearFunction : public torch::autograd::Function<Nf4LinearFunction> {
public:
    static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& packed,
                              const at::Tensor& absmax, std::vector<int64_t> shape, int64_t blocksize) {
        ctx->save_for_backward({packed, absmax});
        ctx->saved_data["shape"] = shape;
        ctx->saved_data["blocksize"] = blocksize;
        return at::matmul(x, dequantize(packed, absmax, shape, x.scalar_type(), blocksize).t());
    }
    static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::tensor_list grads) {
        const auto saved = ctx->get_saved_variables();
        const at::Tensor& g = grads[0];
        const at::Tensor w = dequantize(saved[0], saved[1], ctx->saved_data["shape"].toIntVector(), g.scalar_type(),
                                        ctx->saved_data["blocksize"].toInt());
        return {at::matmul(g, w), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
};

at::Tensor nf4_linear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& absmax, at::IntArrayRef shape,
                      const std::optional<at::Tensor>& bias, int64_t blocksize) {
    TORCH_CHECK(shape.size() == 2, "fthost::nf4_linear: the weight shape must be [out, in], got ", shape);
    TORCH_CHECK(x.size(-1) == shape[1], "fthost::nf4_linear: input has ", x.size(-1), " features, the weight takes ",
                shape[1]);
    // The bias is added outside the function, by autograd (an undefined tensor cannot be
    // a custom function's input).
    const at::Tensor y = Nf4LinearFunction::apply(x, packed, absmax, shape.vec(), blocksize);
    return bias && bias->defined() ? y + bias->to(x.scalar_type()) : y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fthost, m) {
    m.def("nf4_quantize(Tensor weight, int blocksize=64) -> (Tensor, Tensor)");
    m.def("nf4_dequantize(Tensor packed, Tensor absmax, int[] shape, ScalarType dtype, int blocksize=64) -> Tensor");
    m.def("absmax_quantize(Tensor absmax, int blocksize=256) -> (Tensor, Tensor, Tensor)", &absmax_quantize);
    m.def("absmax_dequantize(Tensor q8, Tensor scale, Tensor offset, int blocksize=256) -> Tensor", &absmax_dequantize);
    m.def("nf4_linear(Tensor x, Tensor packed, Tensor absmax, int[] shape, Tensor? bias, int blocksize=64) -> Tensor",
          &nf4_linear);
    m.def("nf4_dynamic_map() -> Tensor", [] { return dynamic_map_cpu().clone(); });
}

}  // namespace fthost::kernels
