// AdamW (host/train/adamw.cpp) over a bf16 parameter: the step is made on its float32
// master from the gradient widened, exactly as over a float32 parameter holding the same
// values, and the bf16 parameter is the master rounded; the master is optimizer state
// (saved and restored with the moments).
#include "test_support.hpp"

#include "train/adamw.hpp"

namespace fthost::test {
namespace {

TEST(AdamW, ABf16ParameterStepsThroughAFloat32MasterAsAFloat32ParameterDoes) {
    at::manual_seed(7);
    const at::Tensor start = at::randn({6, 10}).to(at::kBFloat16);
    at::Tensor wide = start.to(at::kFloat).requires_grad_(true), narrow = start.clone().requires_grad_(true);
    const host::AdamWOptions opts{0.9, 0.95, 1e-8, 0.1};
    host::AdamW on_wide({{"w", wide}}, opts), on_narrow({{"w", narrow}}, opts);
    for (int step = 0; step < 4; ++step) {
        const at::Tensor g = at::randn({6, 10}).to(at::kBFloat16);
        wide.mutable_grad() = g.to(at::kFloat);
        narrow.mutable_grad() = g;
        on_wide.step(1e-2);
        on_narrow.step(1e-2);
    }
    std::map<std::string, at::Tensor> state;
    for (const auto& [name, t] : on_narrow.state()) state[name] = t;
    ASSERT_TRUE(state.count("master.w"));
    EXPECT_EQ(state.at("master.w").scalar_type(), at::kFloat);
    EXPECT_EQ(state.at("exp_avg.w").scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(state.at("master.w"), wide.detach()));
    EXPECT_TRUE(at::equal(narrow.detach(), wide.detach().to(at::kBFloat16)));
    EXPECT_FALSE(at::equal(narrow.detach(), start));  // it moved
    for (const auto& [name, _] : on_wide.state()) EXPECT_EQ(name.rfind("master.", 0), std::string::npos) << name;

    // Restored into a fresh optimizer, the next step is the same as the original's.
    at::Tensor again = narrow.detach().clone().requires_grad_(true);
    host::AdamW restored({{"w", again}}, opts);
    restored.load_state(state);
    const at::Tensor g = at::randn({6, 10}).to(at::kBFloat16);
    narrow.mutable_grad() = g;
    again.mutable_grad() = g;
    on_narrow.step(1e-2);
    restored.step(1e-2);
    EXPECT_TRUE(at::equal(again.detach(), narrow.detach()));
    state.erase("master.w");
    EXPECT_THROW(restored.load_state(state), Error);
}

}  // namespace
}  // namespace fthost::test
