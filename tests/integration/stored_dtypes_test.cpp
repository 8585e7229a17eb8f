// Checkpoints loaded in their stored dtype (ABI 1.8 keeps_stored_dtypes), as a training
// stage's starting model is: a bf16 base stays bf16 under lora and qlora while adapters
// train in float32, full fine-tuning widens every weight to float32 masters, qlora
// quantises the stored weights to the same NF4 as their widened copies, and neither
// lora nor qlora ever holds a float32 copy of the base (peak RSS against the file's size).
#include "test_support.hpp"

#include "train/process_memory.hpp"

namespace fthost::test {
namespace {

fs::path bf16_fixture() { return fs::path(source_dir()) / "tests/fixtures/hf/llama_gqa_llama3"; }  // bf16, vocab 128

std::unique_ptr<ModelSession> load(const fs::path& dir, WeightDtypes dtypes) {
    return ModelSession::from_stage_dir(dir, registry(), at::Device(at::kCPU), true, dtypes);
}

// Two rows of ids below the fixture's vocabulary of 128.
HostBatch sample_batch() {
    static std::vector<Example> ex = [] {
        std::vector<Example> out(2);
        for (int64_t i = 0; i < 12; ++i) out[0].ids.push_back((7 * i + 3) % 128);
        for (int64_t i = 0; i < 9; ++i) out[1].ids.push_back((11 * i + 5) % 128);
        for (auto& e : out) {
            e.labels = e.ids;
            e.labels[0] = -100;
        }
        return out;
    }();
    return collate({{&ex[0]}, {&ex[1]}});
}

std::set<at::ScalarType> dtypes_of(const TensorList& ts) {
    std::set<at::ScalarType> out;
    for (const auto& [_, t] : ts) out.insert(t.scalar_type());
    return out;
}

const char* kAllLinear = "r = 4\nlora_alpha = 8.0\ntarget_modules = [\"all-linear\"]\n";

TEST(StoredDtypes, ABf16BaseStaysBf16UnderLoraAndItsAdaptersTrainInFloat32) {
    auto stored = load(bf16_fixture(), WeightDtypes::as_stored);
    auto widened = load(bf16_fixture(), WeightDtypes::as_created);
    EXPECT_EQ(dtypes_of(stored->model_parameters()), std::set<at::ScalarType>{at::kBFloat16});
    EXPECT_EQ(dtypes_of(widened->model_parameters()), std::set<at::ScalarType>{at::kFloat});
    stored->apply_param(plugin(FT_KIND_PARAM, "lora", kAllLinear));
    EXPECT_EQ(dtypes_of(stored->trainable_parameters()), std::set<at::ScalarType>{at::kFloat});
    EXPECT_EQ(dtypes_of(stored->model_parameters()), std::set<at::ScalarType>{at::kBFloat16});

    HostBatch b = sample_batch();
    const at::Tensor reference = [&] {
        at::NoGradGuard ng;
        return widened->logits(widened->hidden_states(b));
    }();
    at::Tensor logits = stored->logits(stored->hidden_states(b));
    EXPECT_EQ(logits.scalar_type(), at::kFloat);
    // bf16 products against float32 ones: close, not equal.
    const double scale = reference.abs().max().item<double>();
    EXPECT_LT(max_abs_diff(logits.detach(), reference), 3e-2 * scale);
    EXPECT_GT(max_abs_diff(logits.detach(), reference), 0.0);

    // Gradients reach the float32 adapters (B starts at 0, so A's gradient is 0: look at B's).
    logits.pow(2).mean().backward();
    int with_grad = 0;
    for (const auto& [name, t] : stored->trainable_parameters())
        if (name.find("lora_B") != std::string::npos && t.grad().defined() && t.grad().abs().sum().item<double>() > 0)
            ++with_grad;
    EXPECT_EQ(with_grad, 14);  // 7 sites x 2 layers
    for (const auto& [name, t] : stored->model_parameters()) EXPECT_FALSE(t.grad().defined()) << name;

    // Merging folds the adapter into the bf16 weights: still bf16, the same function.
    {
        at::NoGradGuard ng;
        for (auto& [_, t] : stored->trainable_parameters()) t.normal_(0, 0.05);
    }
    at::NoGradGuard ng;
    const at::Tensor unmerged = stored->logits(stored->hidden_states(b));
    stored->merge_param();
    EXPECT_EQ(dtypes_of(stored->model_parameters()), std::set<at::ScalarType>{at::kBFloat16});
    EXPECT_LT(max_abs_diff(stored->logits(stored->hidden_states(b)), unmerged), 3e-2 * unmerged.abs().max().item<double>());
}

TEST(StoredDtypes, FullFineTuningWidensTheStoredWeightsToFloat32Masters) {
    auto stored = load(bf16_fixture(), WeightDtypes::as_stored);
    auto widened = load(bf16_fixture(), WeightDtypes::as_created);
    stored->apply_param(plugin(FT_KIND_PARAM, "full"));
    const TensorList a = stored->trainable_parameters(), b = widened->model_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].second.scalar_type(), at::kFloat) << a[i].first;
        EXPECT_TRUE(a[i].second.requires_grad()) << a[i].first;
        EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;  // bf16 -> fp32 is exact
    }
}

TEST(StoredDtypes, FullFineTuningInBf16KeepsTheStoredWeightsAndTrainsThem) {
    auto stored = load(bf16_fixture(), WeightDtypes::as_stored);
    auto widened = load(bf16_fixture(), WeightDtypes::as_created);
    stored->apply_param(plugin(FT_KIND_PARAM, "full", "weight_dtype = \"bfloat16\"\n"));
    widened->apply_param(plugin(FT_KIND_PARAM, "full", "weight_dtype = \"bfloat16\"\n"));
    const TensorList a = stored->trainable_parameters(), b = widened->trainable_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].second.scalar_type(), at::kBFloat16) << a[i].first;
        EXPECT_TRUE(a[i].second.requires_grad()) << a[i].first;
        EXPECT_TRUE(at::equal(a[i].second, b[i].second)) << a[i].first;  // fp32 -> bf16 of widened bf16 is exact
    }
    HostBatch batch = sample_batch();
    stored->logits(stored->hidden_states(batch)).pow(2).mean().backward();
    for (const auto& [name, t] : a) {
        ASSERT_TRUE(t.grad().defined()) << name;
        EXPECT_EQ(t.grad().scalar_type(), at::kBFloat16) << name;
    }
    EXPECT_THROW(load(bf16_fixture(), WeightDtypes::as_stored)
                     ->apply_param(plugin(FT_KIND_PARAM, "full", "weight_dtype = \"float8\"\n")),
                 Error);
    // A model that computes in float32 only (T5 declares no keeps_stored_dtypes) is refused.
    auto t5 = load(fs::path(source_dir()) / "tests/fixtures/hf/t5_v1_relu_tied", WeightDtypes::as_stored);
    try {
        t5->apply_param(plugin(FT_KIND_PARAM, "full", "weight_dtype = \"bfloat16\"\n"));
        FAIL() << "bf16 weights accepted by a float32-only model";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("weight_dtype"), std::string::npos) << e.what();
    }
}

// qlora takes the sites' weights in host memory (ABI 1.9 takes_base_on_host); lora and
// full take everything on the run's device.
TEST(StoredDtypes, QloraTakesItsBaseInHostMemory) {
    EXPECT_TRUE(takes_base_on_host(plugin(FT_KIND_PARAM, "qlora")));
    EXPECT_FALSE(takes_base_on_host(plugin(FT_KIND_PARAM, "lora")));
    EXPECT_FALSE(takes_base_on_host(plugin(FT_KIND_PARAM, "full")));
    auto m = load(bf16_fixture(), WeightDtypes::as_stored);
    const auto sites = m->site_weights();
    EXPECT_EQ(sites.size(), 14u);  // 7 linear sites x 2 layers
    size_t found = 0;
    for (const auto& [name, p] : m->model_parameters())
        if (sites.count(p.unsafeGetTensorImpl())) {
            ++found;
            EXPECT_NE(name.find("_proj.weight"), std::string::npos) << name;
        }
    EXPECT_EQ(found, sites.size());
}

TEST(StoredDtypes, QloraQuantisesTheStoredWeightsAsItQuantisesTheirWidenedCopies) {
    const char* qlora = "r = 4\ntarget_modules = [\"all-linear\"]\nbnb_4bit_compute_dtype = \"float32\"\n";
    auto stored = load(bf16_fixture(), WeightDtypes::as_stored);
    auto widened = load(bf16_fixture(), WeightDtypes::as_created);
    at::manual_seed(3);
    stored->apply_param(plugin(FT_KIND_PARAM, "qlora", qlora));
    at::manual_seed(3);
    widened->apply_param(plugin(FT_KIND_PARAM, "qlora", qlora));
    EXPECT_EQ(dtypes_of(stored->trainable_parameters()), std::set<at::ScalarType>{at::kFloat});
    HostBatch b = sample_batch();
    at::NoGradGuard ng;
    // Embedding, norms and NF4 sites all widen exactly: the hidden states are the same bits.
    EXPECT_EQ(max_abs_diff(stored->hidden_states(b), widened->hidden_states(b)), 0.0);
}

// A decoder whose linear sites hold ~77M weights (154 MB in bf16), saved as a bf16 stage.
fs::path bf16_stage(const std::string& name) {
    const fs::path dir = temp_dir(name);
    {
        at::manual_seed(5);
        ModelSession m(plugin(FT_KIND_MODEL, "decoder",
                              "vocab_size = 260\nhidden_size = 1024\nintermediate_size = 2816\nnum_hidden_layers = 6\n"
                              "num_attention_heads = 16\n"),
                       registry(), at::Device(at::kCPU));
        m.save_model(dir, kDefaultMaxShardBytes, at::kBFloat16);
    }
    release_free_memory();
    return dir;
}

double file_mb(const fs::path& dir) { return static_cast<double>(fs::file_size(dir / "model.safetensors")) / (1 << 20); }

TEST(StoredDtypes, QloraLoadsWithoutEverHoldingTheWholeBase) {
    map_large_blocks_on_their_own();  // as a stage's setup does
    const fs::path dir = bf16_stage("qlora-peak");
    reset_peak_rss();
    const double before = static_cast<double>(current_rss_bytes()) / (1 << 20);
    auto m = load(dir, WeightDtypes::as_stored);
    m->apply_param(plugin(FT_KIND_PARAM, "qlora", "r = 8\ntarget_modules = [\"all-linear\"]\n"));
    const double peak = static_cast<double>(peak_rss_bytes()) / (1 << 20) - before;
    // NF4 is ~0.52 bytes a weight (40 MB here); one tensor at a time is unquantised. A base
    // held whole would be the file's 154 MB (bf16) or twice it (float32).
    EXPECT_LT(peak, 0.6 * file_mb(dir)) << "peak " << peak << " MB over " << before << " MB; file " << file_mb(dir);
}

// On a GPU: the sites' bf16 weights stay in host memory while the rest goes to the
// device, qlora quantises each on the device in turn, and the device's peak is the NF4
// base and one weight — never the bf16 base (the file's size).
TEST(StoredDtypes, QloraOnAGpuNeverHoldsTheBaseOnTheDevice) {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device here; this check runs on a GPU machine";
    const fs::path dir = bf16_stage("qlora-gpu");
    const at::Device cuda(at::kCUDA, 0);
    auto m = ModelSession::from_stage_dir(dir, registry(), cuda, true, WeightDtypes::as_stored, BasePlacement::sites_on_host);
    const auto sites = m->site_weights();
    for (const auto& [name, p] : m->model_parameters())
        EXPECT_EQ(p.device(), sites.count(p.unsafeGetTensorImpl()) ? at::Device(at::kCPU) : cuda) << name;
    const double before = static_cast<double>(cuda_peak_bytes(0)) / (1 << 20);  // the non-site tensors
    reset_cuda_peak(0);
    m->apply_param(plugin(FT_KIND_PARAM, "qlora", "r = 8\ntarget_modules = [\"all-linear\"]\n"));
    const double peak = static_cast<double>(cuda_peak_bytes(0)) / (1 << 20) - before;
    for (const auto& [name, p] : m->model_parameters()) EXPECT_EQ(p.device(), cuda) << name;
    EXPECT_LT(peak, 0.6 * file_mb(dir)) << "device peak " << peak << " MB over " << before << " MB; file " << file_mb(dir);
    HostBatch b = sample_batch();
    b = to_device(b, cuda);
    EXPECT_TRUE(at::isfinite(m->logits(m->hidden_states(b))).all().item<bool>());
}

TEST(StoredDtypes, LoraHoldsTheBaseAtItsStoredSize) {
    const fs::path dir = bf16_stage("lora-peak");
    reset_peak_rss();
    const double before = static_cast<double>(current_rss_bytes()) / (1 << 20);
    auto m = load(dir, WeightDtypes::as_stored);
    m->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 8\ntarget_modules = [\"all-linear\"]\n"));
    HostBatch b = sample_batch();
    m->logits(m->hidden_states(b)).pow(2).mean().backward();  // every weight's pages read
    const double peak = static_cast<double>(peak_rss_bytes()) / (1 << 20) - before;
    EXPECT_GT(peak, 0.8 * file_mb(dir));  // the base is really read
    EXPECT_LT(peak, 1.4 * file_mb(dir)) << "peak " << peak << " MB over " << before << " MB; file " << file_mb(dir);
}

}  // namespace
}  // namespace fthost::test
