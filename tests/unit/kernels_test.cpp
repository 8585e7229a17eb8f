// fthost::rms_norm (kernels/): registered by the host, equal to Hugging Face's
// LlamaRMSNorm arithmetic, with gradients equal to autograd through the plain ops and
// to finite differences; the CUDA implementation equals the CPU reference when a GPU
// is present.
#include "test_support.hpp"

#include <fthost/torch.hpp>

#include <ATen/core/dispatch/Dispatcher.h>

namespace fthost::test {
namespace {

at::Tensor reference_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
    at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
    xf = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
    return w * xf.to(x.scalar_type());
}

TEST(Kernels, RmsNormIsRegisteredWithTheDispatcher) {
    EXPECT_TRUE(c10::Dispatcher::singleton().findSchema({"fthost::rms_norm", ""}).has_value());
    EXPECT_TRUE(c10::Dispatcher::singleton().findSchema({"fthost::rms_norm_backward", ""}).has_value());
}

TEST(Kernels, RmsNormMatchesTheReferenceForwardAndBackward) {
    at::manual_seed(1);
    for (auto dtype : {at::kFloat, at::kDouble}) {
        at::Tensor x = at::randn({3, 5, 48}, dtype).requires_grad_(true);
        at::Tensor w = (at::rand({48}, dtype) + 0.5).requires_grad_(true);
        at::Tensor xr = x.detach().clone().requires_grad_(true), wr = w.detach().clone().requires_grad_(true);
        at::Tensor y = fthost::ops::rms_norm(x, w, 1e-6);
        at::Tensor yr = reference_rms_norm(xr, wr, 1e-6);
        const double tol = dtype == at::kFloat ? 1e-6 : 1e-12;
        EXPECT_LE(max_abs_diff(y, yr), tol);
        at::Tensor g = at::randn_like(y);
        y.backward(g);
        yr.backward(g);
        EXPECT_LE(max_abs_diff(x.grad(), xr.grad()), 10 * tol);
        EXPECT_LE(max_abs_diff(w.grad(), wr.grad()), 10 * tol);
    }
}

TEST(Kernels, RmsNormGradientsMatchFiniteDifferences) {
    at::manual_seed(2);
    at::Tensor x = at::randn({4, 16}, at::kDouble).requires_grad_(true);
    at::Tensor w = at::randn({16}, at::kDouble).requires_grad_(true);
    at::Tensor g = at::randn({4, 16}, at::kDouble);
    auto f = [&] { return (fthost::ops::rms_norm(x, w, 1e-5) * g).sum(); };
    f().backward();
    for (const at::Tensor* t : {&x, &w}) {
        std::vector<int64_t> every_fifth;
        for (int64_t i = 0; i < t->numel(); i += 5) every_fifth.push_back(i);
        expect_grad_matches_finite_differences(*t, f, every_fifth, 1e-7, 0.0, t == &x ? "x" : "w");
    }
}

TEST(Kernels, RmsNormCudaEqualsCpu) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device here; this check runs on a GPU machine";
    at::manual_seed(3);
    for (auto dtype : {at::kFloat, at::kBFloat16}) {
        at::Tensor x = at::randn({7, 1000}, dtype), w = at::rand({1000}, dtype) + 0.5, g = at::randn({7, 1000}, dtype);
        at::Tensor xc = x.clone().requires_grad_(true), wc = w.clone().requires_grad_(true);
        at::Tensor xg = x.cuda().requires_grad_(true), wg = w.cuda().requires_grad_(true);
        at::Tensor yc = fthost::ops::rms_norm(xc, wc, 1e-6), yg = fthost::ops::rms_norm(xg, wg, 1e-6);
        yc.backward(g);
        yg.backward(g.cuda());
        const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
        EXPECT_LE(max_abs_diff(yc.to(at::kFloat), yg.cpu().to(at::kFloat)), tol);
        EXPECT_LE(max_abs_diff(xc.grad().to(at::kFloat), xg.grad().cpu().to(at::kFloat)), tol);
        EXPECT_LE(max_abs_diff(wc.grad().to(at::kFloat), wg.grad().cpu().to(at::kFloat)), tol * 10);
    }
}

}  // namespace
}  // namespace fthost::test
