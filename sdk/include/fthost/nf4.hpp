// <fthost/nf4.hpp> — a frozen linear weight held as 4-bit NormalFloat (QLoRA), through
// the host's fthost::nf4_* operators (kernels/nf4_op.cpp has the format: bitsandbytes'
// NF4, blocks of 64, optional double quantisation of the absmax constants).
//
//   auto q = fthost::Nf4Weight::quantize(w, /*double_quant=*/true);
//   at::Tensor y = q.linear(x, bias);           // x W^T + b, W dequantised on the fly
//   q.storage_bytes() / q.numel()               // ~0.516 bytes per weight with DQ
#pragma once

#include <fthost/torch.hpp>

#include <ATen/core/dispatch/Dispatcher.h>

namespace fthost {

namespace detail {
inline c10::OperatorHandle nf4_op(const char* name) {
    auto op = c10::Dispatcher::singleton().findSchema({name, ""});
    if (!op)
        throw Error(std::string("this host does not register the operator ") + name +
                        " (kernels/nf4_op.cpp): 4-bit weights need an fthost host built with its kernels",
                    FT_ERR_UNSUPPORTED);
    return *op;
}
}  // namespace detail

class Nf4Weight {
public:
    static constexpr int64_t kBlocksize = 64;        // elements per absmax (bitsandbytes' default)
    static constexpr int64_t kAbsmaxBlocksize = 256;  // absmax values per second-level scale

    // Quantises `w` (any float dtype, any device). The caller may free `w` afterwards.
    static Nf4Weight quantize(const at::Tensor& w, bool double_quant) {
        static const auto q4 = detail::nf4_op("fthost::nf4_quantize").typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>();
        Nf4Weight out;
        out.shape_ = w.sizes().vec();
        at::NoGradGuard ng;
        std::tie(out.packed_, out.absmax_) = q4.call(w.detach(), kBlocksize);
        if (double_quant) {
            static const auto qa = detail::nf4_op("fthost::absmax_quantize")
                                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>();
            std::tie(out.absmax_q8_, out.absmax_scale_, out.absmax_offset_) = qa.call(out.absmax_, kAbsmaxBlocksize);
            out.absmax_ = at::Tensor();
        }
        return out;
    }

    bool double_quant() const { return absmax_q8_.defined(); }
    const std::vector<int64_t>& shape() const { return shape_; }
    int64_t numel() const { return c10::multiply_integers(shape_); }
    const at::Tensor& packed() const { return packed_; }
    // Double quantisation's parts (undefined without it): 8-bit indices into the signed
    // dynamic map, one fp32 scale per 256 of them, and the fp32 mean subtracted first.
    const at::Tensor& absmax_q8() const { return absmax_q8_; }
    const at::Tensor& absmax_scale() const { return absmax_scale_; }
    const at::Tensor& absmax_offset() const { return absmax_offset_; }

    // The per-64 absmax constants in fp32 (dequantised from 8 bits with double quantisation).
    at::Tensor absmax() const {
        if (!double_quant()) return absmax_;
        static const auto da = detail::nf4_op("fthost::absmax_dequantize")
                                   .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>();
        return da.call(absmax_q8_, absmax_scale_, absmax_offset_, kAbsmaxBlocksize);
    }

    at::Tensor dequantize(at::ScalarType dtype) const {
        static const auto dq = detail::nf4_op("fthost::nf4_dequantize")
                                   .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::ScalarType, int64_t)>();
        return dq.call(packed_, absmax(), shape_, dtype, kBlocksize);
    }

    // x W^T + b with W dequantised in x's dtype; differentiable in x and b.
    at::Tensor linear(const at::Tensor& x, const at::Tensor& bias) const {
        static const auto lin = detail::nf4_op("fthost::nf4_linear")
                                    .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                      at::IntArrayRef, const std::optional<at::Tensor>&, int64_t)>();
        return lin.call(x, packed_, absmax(), shape_, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt,
                        kBlocksize);
    }

    // Bytes actually held: codes plus every constant.
    int64_t storage_bytes() const {
        int64_t b = packed_.nbytes();
        for (const at::Tensor* t : {&absmax_, &absmax_q8_, &absmax_scale_, &absmax_offset_})
            if (t->defined()) b += t->nbytes();
        return b;
    }

private:
    std::vector<int64_t> shape_;
    at::Tensor packed_, absmax_;                             // absmax_: without double quantisation
    at::Tensor absmax_q8_, absmax_scale_, absmax_offset_;  // with it
};

}  // namespace fthost
