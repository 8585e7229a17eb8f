// Vocabulary padding (sdk/include/fthost/padded_vocab.hpp): the LM head GEMMs run over a
// vocabulary padded to a multiple of 64, while the weight the host saves and optimises,
// the logits and their gradients keep the real vocabulary size and equal the unpadded
// computation.
#include "test_support.hpp"

#include "io/safetensors.hpp"

#include <fthost/padded_vocab.hpp>

namespace fthost::test {
namespace {

TEST(PaddedVocab, LogitsAndGradientsEqualThePlainHead) {
    at::manual_seed(3);
    for (int64_t vocab : {260, 256, 1}) {
        at::Tensor weight = at::randn({vocab, 32}).set_requires_grad(true);
        const at::Tensor reference_weight = weight.detach().clone().set_requires_grad(true);
        at::Tensor hidden = at::randn({3, 5, 32}).set_requires_grad(true);
        const at::Tensor reference_hidden = hidden.detach().clone().set_requires_grad(true);
        const at::Tensor upstream = at::randn({3, 5, vocab});

        PaddedVocabHead head;
        const at::Tensor logits = head.logits(hidden, weight);
        ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{3, 5, vocab}));
        const at::Tensor expected = at::linear(reference_hidden, reference_weight);
        EXPECT_LT(max_abs_diff(logits, expected), 1e-5) << vocab;
        (logits * upstream).sum().backward();
        (expected * upstream).sum().backward();
        // Gradients sum `vocab` (or 15) products: the padded GEMM's other blocking order
        // changes them by fp32 rounding of sums that size, relative to their magnitude.
        const auto tolerance = [](const at::Tensor& ref) { return 1e-6 * (1.0 + ref.abs().max().item<double>()); };
        EXPECT_LT(max_abs_diff(hidden.grad(), reference_hidden.grad()), tolerance(reference_hidden.grad())) << vocab;
        ASSERT_EQ(weight.grad().sizes(), weight.sizes());
        EXPECT_LT(max_abs_diff(weight.grad(), reference_weight.grad()), tolerance(reference_weight.grad())) << vocab;
        // The parameter is still [V, H]; its storage holds the padded rows (none at 256).
        EXPECT_EQ(weight.size(0), vocab);
        EXPECT_EQ(weight.storage().nbytes(), static_cast<size_t>(padded_vocab_size(vocab) * 32 * 4)) << vocab;
    }
}

TEST(PaddedVocab, AFrozenHeadStillBackPropagatesToTheHiddenStates) {
    // LoRA / QLoRA freeze the head: backward must skip its [V, H] GEMM, not compute it.
    at::manual_seed(5);
    at::Tensor weight = at::randn({260, 32});  // requires no grad
    at::Tensor hidden = at::randn({4, 32}).set_requires_grad(true);
    const at::Tensor reference_hidden = hidden.detach().clone().set_requires_grad(true);
    const at::Tensor upstream = at::randn({4, 260});
    PaddedVocabHead head;
    (head.logits(hidden, weight) * upstream).sum().backward();
    (at::linear(reference_hidden, weight) * upstream).sum().backward();
    EXPECT_FALSE(weight.grad().defined());
    EXPECT_LT(max_abs_diff(hidden.grad(), reference_hidden.grad()), 1e-5);
}

TEST(PaddedVocab, SurvivesTheHostReplacingTheWeight) {
    at::manual_seed(4);
    at::Tensor weight = at::randn({100, 16}).set_requires_grad(true);
    const at::Tensor hidden = at::randn({2, 16});
    PaddedVocabHead head;
    head.logits(hidden, weight);
    // The host moves parameters with set_data (to a device, or a loaded tensor): the
    // alias is rebuilt and the new values are used.
    weight.set_data(at::randn({100, 16}));
    const at::Tensor logits = head.logits(hidden, weight);
    EXPECT_LT(max_abs_diff(logits, at::linear(hidden, weight.detach())), 1e-5);
    EXPECT_EQ(weight.storage().nbytes(), static_cast<size_t>(128 * 16 * 4));
    // An optimiser's in-place update reaches the GEMM through the alias.
    {
        at::NoGradGuard ng;
        weight.mul_(2);
    }
    EXPECT_LT(max_abs_diff(head.logits(hidden, weight), at::linear(hidden, weight.detach())), 1e-5);
}

TEST(PaddedVocab, TheDecoderSavesAndReturnsTheRealVocabulary) {
    auto model = tiny_model(5);  // vocab 260 -> GEMMs at 320
    std::vector<Example> ex = {text_example("padded vocabulary")};
    HostBatch b = collate({{&ex[0]}});
    const at::Tensor logits = model->logits(model->hidden_states(b));
    EXPECT_EQ(logits.size(-1), 260);
    for (const auto& [name, t] : model->model_parameters())
        if (name == "lm_head.weight") {
            EXPECT_EQ(t.size(0), 260);
            EXPECT_EQ(t.storage().nbytes(), static_cast<size_t>(320 * 32 * 4));  // the padded buffer
        }
    const fs::path dir = temp_dir("padded_vocab_save");
    model->save_model(dir);
    const auto saved = load_safetensors((dir / "model.safetensors").string());
    for (const auto& [name, t] : saved)
        if (name == "lm_head.weight" || name == "model.embed_tokens.weight") EXPECT_EQ(t.size(0), 260) << name;
}

}  // namespace
}  // namespace fthost::test
