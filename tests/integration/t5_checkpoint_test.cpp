// The t5 plugin against transformers' T5ForConditionalGeneration on tests/fixtures/hf/t5_*
// (tiny random checkpoints made by make_t5_fixtures.py: T5 v1.0 with a ReLU feed-forward,
// a tied, rescaled head and the tensors old checkpoints carry; v1.1 with gated-gelu and
// its own head in bf16; the same re-saved by transformers 5, whose config.json spells the
// head differently). num_heads * d_kv != d_model, sources past max_distance.
//  * `fthost verify` agrees with transformers within 1e-4 (decoder logits over padded sources);
//  * the host's label log-probs (its encoder-decoder rows) equal transformers' for the same labels;
//  * load -> save keeps every tensor, the extra ones included, byte for byte;
//  * the cached decoder (encoder once, cross-attention keys in the cache, the relative
//    bias at the cache position) generates what recomputing the prefix does;
//  * how config.json and the tensors decide the head; unsupported settings named.
#include "test_support.hpp"

#include "checkpoint/hf_checkpoint.hpp"
#include "export/verify_command.hpp"
#include "generate/generator.hpp"
#include "io/atomic_file.hpp"

#include <set>

namespace fthost::test {
namespace {

using nlohmann::json;

fs::path fixture(const std::string& name) { return fs::path(source_dir()) / "tests/fixtures/hf" / name; }

const char* kCases[] = {"t5_v1_relu_tied", "t5_v11_gated_untied", "t5_v11_resaved_v5"};

json reference(const std::string& name) { return json::parse(host::read_text(fixture(name + ".logits.json"))); }

at::Tensor rows_tensor(const json& rows) {
    const auto v = rows.get<std::vector<std::vector<int64_t>>>();
    std::vector<int64_t> flat;
    for (const auto& r : v) flat.insert(flat.end(), r.begin(), r.end());
    return at::tensor(flat, at::kLong).view({static_cast<int64_t>(v.size()), static_cast<int64_t>(v[0].size())});
}

TEST(T5Checkpoint, LogitsEqualTransformers) {
    for (const std::string name : kCases) {
        const auto r = host::verify_logits({fixture(name).string(), fixture(name + ".logits.json").string(), 1e-4, "cpu"},
                                           registry());
        std::cout << name << ": max abs " << r.max_abs << ", max rel " << r.max_rel << " over " << r.logits << " logits\n";
        EXPECT_TRUE(r.pass) << name << ": max abs diff " << r.max_abs;
        EXPECT_EQ(r.logits, 3 * 12 * 96) << name;
    }
}

TEST(T5Checkpoint, VerifyFailsOnAnotherModelsLogits) {
    const auto r = host::verify_logits(
        {fixture("t5_v1_relu_tied").string(), fixture("t5_v11_gated_untied.logits.json").string(), 1e-4, "cpu"},
        registry());
    EXPECT_FALSE(r.pass);
    EXPECT_GT(r.max_abs, 1e-2);
}

TEST(T5Checkpoint, VerifyNeedsDecoderInputsForAnEncoderDecoder) {
    const fs::path d = temp_dir("t5_verify_ref");
    json ref = reference("t5_v1_relu_tied");
    ref.erase("decoder_input_ids");
    write_file(d / "ref.json", ref.dump());
    try {
        host::verify_logits({fixture("t5_v1_relu_tied").string(), (d / "ref.json").string(), 1e-4, "cpu"}, registry());
        FAIL() << "no error";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("decoder_input_ids"), std::string::npos) << e.what();
    }
}

// The host's own path to sequence log-probs (what sft, dpo, kto, orpo, simpo and grpo
// read): decoder rows start with the start id and are labelled for the next token.
TEST(T5Checkpoint, SequenceLogprobsEqualTransformersForTheSameLabels) {
    for (const std::string name : kCases) {
        const json ref = reference(name);
        auto model = ModelSession::from_stage_dir(fixture(name), registry(), at::kCPU);
        model->freeze();
        EXPECT_EQ(model->decoder_start_id(), 0);
        HostBatch b;
        const at::Tensor dec = rows_tensor(ref["decoder_input_ids"]), labels = rows_tensor(ref["labels"]);
        const int64_t B = dec.size(0), T = dec.size(1);
        b.input_ids = at::cat({dec, labels.narrow(1, T - 1, 1)}, 1);  // the start id, the labels
        b.labels = at::cat({at::full({B, 1}, -100, at::kLong), labels}, 1);
        b.position_ids = at::arange(T + 1, at::kLong).unsqueeze(0).expand({B, T + 1}).contiguous();
        b.sequence_ids = at::zeros({B, T + 1}, at::kLong);
        b.num_labels = B * T;
        b.num_tokens = B * (T + 1);
        b.num_examples = B;
        b.extras = {{"source_ids", rows_tensor(ref["input_ids"])}, {"source_mask", rows_tensor(ref["attention_mask"])}};
        at::NoGradGuard ng;
        const at::Tensor got = model->token_logprobs(as_ft_batch(b, b.num_labels), false).sum(1).to(at::kDouble);
        const auto want = ref["sequence_logprobs"].get<std::vector<double>>();
        for (int64_t i = 0; i < B; ++i)
            EXPECT_NEAR(got[i].item<double>(), want[static_cast<size_t>(i)], 1e-4) << name << " row " << i;
    }
}

TEST(T5Checkpoint, LoadThenSaveKeepsEveryTensorByteForByte) {
    for (const std::string name : kCases) {
        const fs::path out = temp_dir("t5_resave_" + name);
        auto m = ModelSession::from_stage_dir(fixture(name), registry(), at::kCPU);
        m->save_model(out);
        EXPECT_EQ(host::read_text(out / "config.json"), host::read_text(fixture(name) / "config.json")) << name;
        const auto a = host::load_hf_tensors(fixture(name)), b = host::load_hf_tensors(out);
        ASSERT_EQ(a.size(), b.size()) << name;
        for (const auto& [tensor, t] : a) {
            ASSERT_TRUE(b.count(tensor)) << name << ": " << tensor << " not saved";
            const at::Tensor& u = b.at(tensor);
            EXPECT_EQ(u.scalar_type(), t.scalar_type()) << name << ": " << tensor;
            EXPECT_EQ(u.sizes(), t.sizes()) << name << ": " << tensor;
            EXPECT_EQ(std::memcmp(u.data_ptr(), t.data_ptr(), t.nbytes()), 0) << name << ": " << tensor << " bytes";
        }
        EXPECT_NO_THROW(ModelSession::from_stage_dir(out, registry(), at::kCPU)) << name;
    }
    // The old layout's extra names come back; transformers 5's files have none.
    const auto old = host::load_hf_tensors(fixture("t5_v1_relu_tied"));
    EXPECT_TRUE(old.count("encoder.embed_tokens.weight"));
    EXPECT_TRUE(old.count("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"));
}

// A copy of shared.weight under another name is written from the trained weight, not
// from what was read.
TEST(T5Checkpoint, EmbeddingAliasesAreSavedFromTheParameter) {
    auto m = ModelSession::from_stage_dir(fixture("t5_v1_relu_tied"), registry(), at::kCPU);
    {
        at::NoGradGuard ng;
        for (auto& [name, t] : m->model_parameters())
            if (name == "shared.weight") t.add_(1.0);
    }
    const fs::path out = temp_dir("t5_alias");
    m->save_model(out);
    const auto saved = host::load_hf_tensors(out), read = host::load_hf_tensors(fixture("t5_v1_relu_tied"));
    EXPECT_TRUE(saved.at("encoder.embed_tokens.weight").equal(saved.at("shared.weight")));
    EXPECT_TRUE(saved.at("decoder.embed_tokens.weight").equal(read.at("shared.weight") + 1.0));
    const std::string stale = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight";
    EXPECT_TRUE(saved.at(stale).equal(read.at(stale)));
}

TEST(T5Checkpoint, CachedGenerationEqualsRecomputingThePrefix) {
    for (const std::string name : {"t5_v1_relu_tied", "t5_v11_gated_untied"}) {
        const json ref = reference(name);
        auto model = ModelSession::from_stage_dir(fixture(name), registry(), at::kCPU);
        model->freeze();
        ASSERT_TRUE(model->supports_kv_cache());
        const auto src = ref["input_ids"].get<std::vector<std::vector<int64_t>>>();
        const auto mask = ref["attention_mask"].get<std::vector<std::vector<int64_t>>>();
        std::vector<std::vector<Field>> fields;
        for (size_t i = 0; i < src.size(); ++i) {
            std::vector<int64_t> real;
            for (size_t j = 0; j < src[i].size(); ++j)
                if (mask[i][j]) real.push_back(src[i][j]);
            fields.push_back(source_fields(real));
        }
        std::vector<std::vector<int64_t>> prompts;
        std::vector<const std::vector<Field>*> fp;
        for (int g = 0; g < 2; ++g)
            for (const auto& f : fields) prompts.push_back({0}), fp.push_back(&f);
        SamplingOptions o;
        o.max_new_tokens = 30;  // past max_distance: the decoder reaches its logarithmic buckets
        o.stop_ids = std::vector<int64_t>{};
        for (int64_t batch : {1, 6}) {
            // Greedy, then sampled from one seed: equal logits give equal draws.
            o.temperature = batch == 1 ? 0.0 : 1.0;
            o.seed = 5;
            o.use_cache = true;
            GenerationStats stats;
            const auto cached = generate(*model, prompts, o, batch, *TextCodec::bytes(), &stats, fp);
            o.use_cache = false;
            const auto plain = generate(*model, prompts, o, batch, *TextCodec::bytes(), nullptr, fp);
            for (size_t i = 0; i < prompts.size(); ++i) {
                EXPECT_EQ(cached[i].tokens, plain[i].tokens) << name << " prompt " << i << " batch " << batch;
                EXPECT_EQ(cached[i].tokens.size(), 30u);
            }
            // The untied model's greedy answers depend on the source (the tied one's
            // rescaled random logits are too flat to show it in an argmax).
            if (o.temperature > 0 || name != std::string("t5_v11_gated_untied")) continue;
            std::set<std::vector<int64_t>> distinct;
            for (size_t i = 0; i < fields.size(); ++i) distinct.insert(cached[i].tokens);
            EXPECT_GT(distinct.size(), 1u) << name << " batch " << batch << ": every source generated the same tokens";
        }
    }
}

// PEFT's LoRA over the untied checkpoint (its default T5 targets q and v, task
// SEQ_2_SEQ_LM; make_peft_t5_fixtures.py) loads as an fthost adapter stage over the same
// base — lora with no target_modules takes the model's defaults, so every PEFT tensor
// name must match one of ours and none may be missing — and computes PEFT's logits.
TEST(T5Checkpoint, PeftsDefaultLoraLoadsAndComputesPeftsLogits) {
    const fs::path peft_dir = fs::path(source_dir()) / "tests/fixtures/peft_t5";
    const json peft_cfg = json::parse(host::read_text(peft_dir / "adapter_config.json"));
    EXPECT_EQ(peft_cfg["task_type"], "SEQ_2_SEQ_LM");
    const fs::path stage = temp_dir("t5_peft_stage");
    fs::copy_file(peft_dir / "adapter_model.safetensors", stage / "adapter_model.safetensors");
    const json stage_json = {{"format", "fthost-stage-1"},
                             {"base", fixture("t5_v11_gated_untied").string()},
                             {"param_plugin", "lora"},
                             {"param_config", {{"r", peft_cfg["r"]}, {"lora_alpha", peft_cfg["lora_alpha"].get<double>()}}}};
    write_file(stage / "stage.json", stage_json.dump());
    auto unmerged = ModelSession::from_stage_dir(stage, registry(), at::kCPU, /*merge_adapter=*/false);
    std::set<std::string> sites;
    for (const auto& [name, _] : unmerged->trainable_parameters()) sites.insert(name.substr(0, name.find(".lora_")));
    EXPECT_EQ(sites.size(), 16u);  // q and v of 2 encoder and 3 decoder self-attentions, 3 cross-attentions
    for (const auto& s : sites) EXPECT_TRUE(s.substr(s.size() - 2) == ".q" || s.substr(s.size() - 2) == ".v") << s;
    const auto r = host::verify_logits({stage.string(), (peft_dir / "logits.json").string(), 1e-4, "cpu"}, registry());
    std::cout << "peft lora over t5: max abs " << r.max_abs << "\n";
    EXPECT_TRUE(r.pass) << r.max_abs;
    // The adapter moved the logits (the test would pass on the base alone otherwise).
    const auto base = host::verify_logits(
        {fixture("t5_v11_gated_untied").string(), (peft_dir / "logits.json").string(), 1e-4, "cpu"}, registry());
    EXPECT_GT(base.max_abs, 1e-2);
}

PluginSection section_of(const std::string& dir_name, const std::function<void(json&)>& edit = {}) {
    const fs::path d = temp_dir("t5_config");
    json c = json::parse(host::read_text(fixture(dir_name) / "config.json"));
    if (edit) edit(c);
    write_file(d / "config.json", c.dump());
    std::vector<std::string> names;
    for (const auto& [n, _] : host::load_hf_tensors(fixture(dir_name))) names.push_back(n);
    return host::hf_model_section(d, names, registry());
}

TEST(T5Checkpoint, TheHeadAndItsRescaleFollowTheTensorsAndTheRawConfig) {
    const auto v1 = section_of("t5_v1_relu_tied"), v11 = section_of("t5_v11_gated_untied");
    const auto v5 = section_of("t5_v11_resaved_v5");
    EXPECT_EQ(v1.plugin, "t5");
    EXPECT_TRUE(v1.config.get_bool("tie_word_embeddings"));
    EXPECT_TRUE(v1.config.get_bool("scale_decoder_outputs"));
    EXPECT_EQ(v1.config.get_string("feed_forward_proj"), "relu");
    EXPECT_FALSE(v11.config.get_bool("tie_word_embeddings"));
    EXPECT_FALSE(v11.config.get_bool("scale_decoder_outputs"));
    EXPECT_EQ(v11.config.get_string("feed_forward_proj"), "gated-gelu_new");
    EXPECT_EQ(v11.config.get_int("num_decoder_layers"), 3);
    EXPECT_EQ(v11.config.values, v5.config.values);  // 4.x and 5.x spellings of one checkpoint
    // No tie_word_embeddings key at all: T5's default, tied and rescaled.
    const auto bare = section_of("t5_v1_relu_tied", [](json& c) { c.erase("tie_word_embeddings"); });
    EXPECT_TRUE(bare.config.get_bool("scale_decoder_outputs"));
}

TEST(T5Checkpoint, UnsupportedSettingsAreErrorsNamingTheKey) {
    const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
        {[](json& c) { c["feed_forward_proj"] = "gated-tanh"; c.erase("dense_act_fn"); c.erase("is_gated_act"); },
         "feed_forward_proj: activation 'tanh' is not supported"},
        {[](json& c) { c.erase("d_kv"); }, "d_kv: missing or not an integer"},
        {[](json& c) { c["num_heads"] = 0; }, "num_heads"},
        {[](json& c) { c["decoder_start_token_id"] = 500; }, "decoder_start_token_id"},
    };
    for (const auto& [edit, want] : cases) {
        try {
            section_of("t5_v1_relu_tied", edit);
            ADD_FAILURE() << "no error for " << want;
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
        }
    }
}

}  // namespace
}  // namespace fthost::test
