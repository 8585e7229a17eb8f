// NF4 (kernels/nf4_op.cpp, <fthost/nf4.hpp>) against bitsandbytes 0.50.2: for the weights
// in tests/fixtures/nf4_bnb.json (made by make_nf4_fixtures.py) the packed codes, the
// absmax constants (plain, and double-quantised: 8-bit indices, per-256 scales, offset)
// and the dequantised weights must be bit-identical. Also: the code table and dynamic
// map equal bnb's, storage is <= 0.55 bytes per weight with double quantisation,
// nf4_linear's gradients equal autograd through the dequantised weight, and the CUDA
// kernels equal the CPU reference when a GPU is present.
#include "test_support.hpp"

#include <fthost/nf4.hpp>

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

std::string base64_decode(const std::string& in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string out;
    int bits = 0;
    uint32_t acc = 0;  // unsigned: the high bits shifted out are dropped (UBSan: a signed shift overflowed)
    for (char c : in) {
        const int v = value(c);
        if (v < 0) continue;  // '=' padding
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return out;
}

at::Tensor from_b64(const json& j, at::ScalarType type) {
    const std::string bytes = base64_decode(j.get<std::string>());
    const int64_t n = static_cast<int64_t>(bytes.size()) / static_cast<int64_t>(c10::elementSize(type));
    return at::from_blob(const_cast<char*>(bytes.data()), {n}, type).clone();
}

const json& fixture() {
    static const json j = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/nf4_bnb.json"));
    return j;
}

bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
    return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b);
}

at::Tensor call_dynamic_map() {
    return c10::Dispatcher::singleton().findSchemaOrThrow("fthost::nf4_dynamic_map", "").typed<at::Tensor()>().call();
}

at::Tensor dequantize(const at::Tensor& packed, const at::Tensor& absmax, at::IntArrayRef shape, at::ScalarType dtype) {
    return c10::Dispatcher::singleton()
        .findSchemaOrThrow("fthost::nf4_dequantize", "")
        .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::ScalarType, int64_t)>()
        .call(packed, absmax, shape, dtype, 64);
}

std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& w) {
    return c10::Dispatcher::singleton()
        .findSchemaOrThrow("fthost::nf4_quantize", "")
        .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, int64_t)>()
        .call(w, 64);
}

TEST(Nf4, CodeTableAndDynamicMapEqualBitsandbytes) {
    // Bytes 0x01, 0x23, ..., 0xEF with absmax 1 dequantise to the 16 codes in order.
    std::vector<uint8_t> bytes;
    for (int i = 0; i < 16; i += 2) bytes.push_back(static_cast<uint8_t>(i << 4 | (i + 1)));
    const at::Tensor packed = at::tensor(at::ArrayRef<uint8_t>(bytes)).to(at::kByte);
    const at::Tensor codes = dequantize(packed, at::ones({1}), {16}, at::kFloat);
    EXPECT_TRUE(at::equal(codes, at::tensor(fixture()["nf4_code"].get<std::vector<float>>())));
    EXPECT_TRUE(at::equal(call_dynamic_map(), at::tensor(fixture()["dynamic_map"].get<std::vector<float>>())));
}

TEST(Nf4, CodesAbsmaxAndDequantisedWeightsEqualBitsandbytes) {
    ASSERT_EQ(fixture()["bitsandbytes"], "0.50.2");
    int checked = 0;
    for (const json& c : fixture()["cases"]) {
        const std::string name = c["name"].get<std::string>() + (c["double_quant"].get<bool>() ? " (DQ)" : "");
        const auto shape = c["shape"].get<std::vector<int64_t>>();
        const at::ScalarType dtype = c["dtype"] == "bfloat16" ? at::kBFloat16 : at::kFloat;
        const at::Tensor w = from_b64(c["weight"], at::kFloat).view(shape).to(dtype);
        const auto q = fthost::Nf4Weight::quantize(w, c["double_quant"].get<bool>());
        EXPECT_TRUE(bit_equal(q.packed(), from_b64(c["packed"], at::kByte))) << name << ": packed codes";
        EXPECT_TRUE(bit_equal(q.absmax(), from_b64(c["absmax"], at::kFloat))) << name << ": absmax";
        if (c["double_quant"].get<bool>()) {
            EXPECT_TRUE(bit_equal(q.absmax_q8(), from_b64(c["absmax_q8"], at::kByte))) << name << ": 8-bit absmax";
            EXPECT_TRUE(bit_equal(q.absmax_scale(), from_b64(c["absmax_scale"], at::kFloat))) << name << ": absmax scales";
            EXPECT_EQ(q.absmax_offset().item<float>(), c["absmax_offset"].get<float>()) << name << ": offset";
        }
        const at::Tensor want = from_b64(c["dequantized"], at::kFloat).view(shape).to(dtype);
        EXPECT_TRUE(bit_equal(q.dequantize(dtype), want)) << name << ": dequantised weight";
        ++checked;
    }
    EXPECT_EQ(checked, 12);
}

TEST(Nf4, DoubleQuantisedStorageIsAtMost055BytesPerWeight) {
    at::manual_seed(5);
    const at::Tensor w = at::randn({512, 1024});
    const auto plain = fthost::Nf4Weight::quantize(w, false), dq = fthost::Nf4Weight::quantize(w, true);
    const double plain_bpp = static_cast<double>(plain.storage_bytes()) / static_cast<double>(w.numel());
    const double dq_bpp = static_cast<double>(dq.storage_bytes()) / static_cast<double>(w.numel());
    // 0.5 for the codes + 4/64 (fp32 absmax) = 0.5625; with DQ 0.5 + 1/64 + 4/(64*256) + 4/n.
    EXPECT_NEAR(plain_bpp, 0.5625, 1e-9);
    EXPECT_LE(dq_bpp, 0.55);
    EXPECT_NEAR(dq_bpp, 0.5 + 1.0 / 64 + 4.0 / (64 * 256) + 4.0 / static_cast<double>(w.numel()), 1e-9);
    // Quantisation error stays at NF4's level: the dequantised weight is close, not equal.
    const double rel = ((dq.dequantize(at::kFloat) - w).norm() / w.norm()).item<double>();
    EXPECT_GT(rel, 0.0);
    EXPECT_LT(rel, 0.12);
}

TEST(Nf4, LinearEqualsTheDequantisedWeightWithGradients) {
    at::manual_seed(6);
    const at::Tensor w = at::randn({24, 40}, at::kFloat) * 0.1;
    const auto q = fthost::Nf4Weight::quantize(w, true);
    const at::Tensor wd = q.dequantize(at::kFloat);
    at::Tensor x = at::randn({3, 5, 40}).requires_grad_(true);
    at::Tensor b = at::randn({24}).requires_grad_(true);
    at::Tensor xr = x.detach().clone().requires_grad_(true), br = b.detach().clone().requires_grad_(true);
    const at::Tensor y = q.linear(x, b), yr = at::linear(xr, wd, br);
    EXPECT_LE(max_abs_diff(y, yr), 1e-6);
    const at::Tensor g = at::randn_like(y);
    y.backward(g);
    yr.backward(g);
    EXPECT_LE(max_abs_diff(x.grad(), xr.grad()), 1e-6);
    EXPECT_LE(max_abs_diff(b.grad(), br.grad()), 1e-5);
    // Without a bias, and in double: finite differences on x.
    at::Tensor xd = at::randn({2, 40}, at::kDouble).requires_grad_(true);
    const at::Tensor gd = at::randn({2, 24}, at::kDouble);
    auto f = [&] { return (q.linear(xd, at::Tensor()) * gd).sum(); };
    f().backward();
    expect_grad_matches_finite_differences(xd, f, {0, 7, 39, 41, 79}, 1e-7, 0.0, "x");
}

TEST(Nf4, QuantisingAZeroBlockGivesZeros) {
    const at::Tensor w = at::cat({at::zeros({64}), at::randn({70})}).view({2, 67});
    const auto q = fthost::Nf4Weight::quantize(w, false);
    EXPECT_TRUE(at::equal(q.dequantize(at::kFloat).view(-1).narrow(0, 0, 64), at::zeros({64})));
}

TEST(Nf4, CudaEqualsCpu) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device here; this check runs on a GPU machine";
    for (const json& c : fixture()["cases"]) {
        const auto shape = c["shape"].get<std::vector<int64_t>>();
        const at::Tensor w = from_b64(c["weight"], at::kFloat).view(shape);
        const auto [p_cpu, a_cpu] = quantize(w);
        const auto [p_gpu, a_gpu] = quantize(w.cuda());
        EXPECT_TRUE(bit_equal(p_gpu.cpu(), p_cpu)) << c["name"];
        EXPECT_TRUE(bit_equal(a_gpu.cpu(), a_cpu)) << c["name"];
        for (auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
            EXPECT_TRUE(bit_equal(dequantize(p_gpu, a_gpu, shape, dtype).cpu(), dequantize(p_cpu, a_cpu, shape, dtype)))
                << c["name"] << " " << dtype;
        const auto dq_cpu = fthost::Nf4Weight::quantize(w, true), dq_gpu = fthost::Nf4Weight::quantize(w.cuda(), true);
        EXPECT_TRUE(bit_equal(dq_gpu.absmax().cpu(), dq_cpu.absmax())) << c["name"] << ": double-quantised absmax";
    }
}

}  // namespace
}  // namespace fthost::test
