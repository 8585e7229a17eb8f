// The overlapped gradient all-reduce (distributed/gradient_reducer.*) on a process group of
// one rank (Gloo, a real TCPStore): buckets start from the hooks during the armed backward,
// in order; finish() starts the rest, writes the sums back, and a parameter without a
// gradient gets zeros. (Two ranks are tested end to end in distributed_test.cpp.)
#include "test_support.hpp"

#include "distributed/communicator.hpp"
#include "distributed/gradient_reducer.hpp"
#include "distributed/local_launcher.hpp"

namespace fthost::test {
namespace {

std::unique_ptr<Communicator> group_of_one() {
    World w;
    w.launcher = "torchrun";
    w.master_addr = "127.0.0.1";
    w.master_port = free_loopback_port();
    DistributedConfig cfg;
    cfg.backend = "gloo";  // named: a launcher's single rank gets a real process group
    cfg.timeout_s = 30;
    return Communicator::connect(w, cfg, at::Device(at::kCPU));
}

TEST(GradientReducer, BucketsStartDuringBackwardInOrder) {
    auto comm = group_of_one();
    ASSERT_TRUE(comm->connected());
    // y = sum(c * (b * (a * x))): backward produces c's gradient first, then b's, then a's.
    std::vector<at::Tensor> params;
    for (int i = 0; i < 3; ++i) params.push_back(at::randn({256}).requires_grad_(true));
    at::Tensor unused = at::randn({8}).requires_grad_(true);
    params.push_back(unused);
    // 1 KiB buckets: one parameter each (256 floats), the unused one its own too.
    GradientReducer reducer(*comm, params, 1.0 / 1024);
    ASSERT_EQ(reducer.buckets(), 4u);
    const at::Tensor x = at::randn({256});
    auto loss = [&] { return (params[2] * (params[1] * (params[0] * x))).sum(); };

    loss().backward();  // not armed: an accumulation micro-batch, nothing reduced
    const at::Tensor first = params[0].grad().clone();
    reducer.arm();
    loss().backward();
    reducer.finish();
    // The unused parameter comes last in reverse order (bucket 0): nothing can start before
    // it is ready, so it is found at finish — which then starts all four.
    EXPECT_EQ(reducer.started_in_backward(), 0u);
    EXPECT_TRUE(at::allclose(params[0].grad(), 2 * first));  // the sum over one rank: the gradient itself
    ASSERT_TRUE(unused.grad().defined());
    EXPECT_EQ(unused.grad().abs().sum().item<double>(), 0.0);

    // Without the unused parameter, every bucket starts from the hooks.
    std::vector<at::Tensor> used(params.begin(), params.begin() + 3);
    for (auto& p : used) p.mutable_grad() = at::Tensor();
    GradientReducer overlapped(*comm, used, 1.0 / 1024);
    overlapped.arm();
    loss().backward();
    overlapped.finish();
    EXPECT_EQ(overlapped.started_in_backward(), 3u);
    EXPECT_TRUE(at::allclose(used[0].grad(), first));
}

}  // namespace
}  // namespace fthost::test
