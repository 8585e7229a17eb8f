// Hugging Face checkpoints (host/checkpoint/, the decoder's hf_config.cpp) against
// tests/fixtures/hf/ — tiny random-weight checkpoints written by transformers with their
// fp32 logits (make_hf_fixtures.py): Llama with GQA, llama3 rope scaling and bf16
// weights; Llama with tied embeddings in fp32 shards; Qwen2 with q/k/v biases in fp16;
// Llama with attention and MLP biases and an explicit head_dim; Qwen3 with q/k norms in bf16;
// Mistral with a sliding window; Gemma 2 (soft-capping, sandwich norms, alternating windows);
// Phi-3 (fused qkv_proj and gate_up_proj, a sliding window); Gemma 3 (q/k norms, a local
// rotary base on sliding layers, linear scaling on full ones); Mixtral and Qwen3-MoE
// (top-2 of 4 experts, renormalised or not), whose load-balancing loss equals transformers'.
//  * `fthost verify` agrees with transformers within 1e-4 on each;
//  * load -> save keeps every tensor byte for byte (dtype, shape, bytes), sharded or not;
//  * transformers 4.x's config keys (rope_theta, rope_scaling) read as 5.x's do;
//  * what cannot be loaded fails with an error naming it.
#include "test_support.hpp"

#include "checkpoint/hf_checkpoint.hpp"
#include "export/verify_command.hpp"
#include "io/atomic_file.hpp"

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

fs::path fixture(const std::string& name) { return fs::path(source_dir()) / "tests/fixtures/hf" / name; }

const char* kCases[] = {"llama_gqa_llama3", "llama_gqa_tied", "qwen2_bias", "llama_bias_head_dim", "qwen3_qk_norm",
                         "mistral_sliding_window", "gemma2_softcap", "phi3_fused", "gemma3_text", "mixtral_moe",
                         "qwen3_moe"};

TEST(HfCheckpoint, LogitsEqualTransformers) {
    for (const std::string name : kCases) {
        const auto r = host::verify_logits({fixture(name).string(), fixture(name + ".logits.json").string(), 1e-4, "cpu"},
                                           registry());
        std::cout << name << ": max abs " << r.max_abs << ", max rel " << r.max_rel << " over " << r.logits << " logits\n";
        EXPECT_TRUE(r.pass) << name << ": max abs diff " << r.max_abs;
        EXPECT_EQ(r.logits, 2 * 20 * 128) << name;
    }
}

TEST(HfCheckpoint, VerifyFailsOnOtherLogits) {
    // Qwen2's reference against the Llama checkpoint of the same shape: must not pass.
    const auto r = host::verify_logits(
        {fixture("llama_gqa_tied").string(), fixture("qwen2_bias.logits.json").string(), 1e-4, "cpu"}, registry());
    EXPECT_FALSE(r.pass);
    EXPECT_GT(r.max_abs, 1e-2);
}

TEST(HfCheckpoint, LoadThenSaveKeepsEveryTensorByteForByte) {
    for (const std::string name : kCases) {
        for (const uint64_t shard : {host::kDefaultMaxShardBytes, uint64_t{20000}}) {
            const fs::path out = temp_dir("hf_resave_" + name + std::to_string(shard));
            fs::remove_all(out);
            fs::create_directories(out);
            auto m = ModelSession::from_stage_dir(fixture(name), registry(), at::kCPU);
            m->save_model(out, shard);
            EXPECT_TRUE(host::is_hf_checkpoint(out)) << name;
            EXPECT_EQ(host::read_text(out / "config.json"), host::read_text(fixture(name) / "config.json")) << name;
            EXPECT_EQ(fs::exists(out / "model.safetensors.index.json"), shard < 100000) << name;
            const auto a = host::load_hf_tensors(fixture(name)), b = host::load_hf_tensors(out);
            ASSERT_EQ(a.size(), b.size()) << name;
            for (const auto& [tensor, t] : a) {
                ASSERT_TRUE(b.count(tensor)) << name << ": " << tensor << " not saved";
                const at::Tensor& u = b.at(tensor);
                EXPECT_EQ(u.scalar_type(), t.scalar_type()) << name << ": " << tensor;
                EXPECT_EQ(u.sizes(), t.sizes()) << name << ": " << tensor;
                EXPECT_EQ(std::memcmp(u.data_ptr(), t.data_ptr(), t.nbytes()), 0) << name << ": " << tensor << " bytes";
            }
            // The saved directory loads again, as a checkpoint and as a stage.
            EXPECT_NO_THROW(ModelSession::from_stage_dir(out, registry(), at::kCPU)) << name;
        }
    }
}

PluginSection section_of(const json& config) {
    const fs::path d = temp_dir("hf_config_only");
    fs::create_directories(d);
    write_file(d / "config.json", config.dump());
    return host::hf_model_section(d, {}, registry());
}

TEST(HfCheckpoint, TransformersFourAndFiveConfigKeysReadTheSame) {
    const json v5 = json::parse(host::read_text(fixture("llama_gqa_llama3") / "config.json"));
    json v4 = v5;
    json rope = v4["rope_parameters"];
    v4.erase("rope_parameters");
    v4["rope_theta"] = rope["rope_theta"];
    rope.erase("rope_theta");
    rope.erase("rope_type");
    rope["type"] = "llama3";  // the oldest spelling
    v4["rope_scaling"] = rope;
    const auto a = section_of(v5), b = section_of(v4);
    EXPECT_EQ(a.plugin, "decoder");
    EXPECT_EQ(a.config.values, b.config.values);
    EXPECT_EQ(a.config.get_string("rope_scaling_type"), "llama3");
    EXPECT_EQ(a.config.get_float("rope_theta"), 500000.0);
    EXPECT_EQ(a.config.get_int("rope_scaling_original_max_position_embeddings"), 16);
    const auto q = section_of(json::parse(host::read_text(fixture("qwen2_bias") / "config.json")));
    EXPECT_TRUE(q.config.get_bool("attention_bias"));
    EXPECT_EQ(q.config.get_float("rope_theta"), 1e6);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

// The fixture's two rows as a batch, with gradients on.
HostBatch fixture_batch(const json& ref, std::vector<Example>& rows) {
    for (const auto& ids : ref["input_ids"]) {
        Example e;
        e.ids = ids.get<std::vector<int64_t>>();
        e.labels = e.ids;
        rows.push_back(e);
    }
    return collate({{&rows[0]}, {&rows[1]}});
}

// A copy of a fixture with config.json edited.
fs::path with_config(const std::string& name, const std::function<void(json&)>& edit) {
    const fs::path d = temp_dir("hf_cfg_" + name);
    for (const auto& f : fs::directory_iterator(fixture(name))) fs::copy_file(f.path(), d / f.path().filename());
    json c = json::parse(host::read_text(d / "config.json"));
    edit(c);
    host::write_text_atomically(d / "config.json", c.dump(2));
    return d;
}

TEST(HfCheckpoint, AMixtureOfExpertsReportsTransformersLoadBalancingLoss) {
    // mixtral_moe was saved with output_router_logits and router_aux_loss_coef 0.02; qwen3_moe
    // without (no auxiliary loss), then with them turned on here.
    const std::vector<std::tuple<std::string, fs::path, double>> cases = {
        {"mixtral_moe", fixture("mixtral_moe"), 0.02},
        {"qwen3_moe", with_config("qwen3_moe", [](json& c) { c["output_router_logits"] = true; }), 0.001}};
    for (const auto& [name, dir, coef] : cases) {
        const json ref = json::parse(host::read_text(fixture(name + ".logits.json")));
        auto m = ModelSession::from_stage_dir(dir, registry(), at::Device(at::kCPU));
        m->set_training(true);
        std::vector<Example> rows;
        HostBatch b = fixture_batch(ref, rows);
        m->hidden_states(b);
        const at::Tensor aux = m->take_auxiliary_loss();
        ASSERT_TRUE(aux.defined()) << name;
        EXPECT_NEAR(aux.item<double>(), coef * ref["aux_loss"].get<double>(), 1e-6 * coef) << name;
        EXPECT_TRUE(aux.requires_grad()) << name;  // it trains the routers
        {
            at::NoGradGuard ng;  // no gradients (eval): no auxiliary loss
            m->hidden_states(b);
            EXPECT_FALSE(m->take_auxiliary_loss().defined()) << name;
        }
    }
    auto plain = ModelSession::from_stage_dir(fixture("qwen3_moe"), registry(), at::Device(at::kCPU));
    plain->set_training(true);
    std::vector<Example> rows;
    HostBatch b = fixture_batch(json::parse(host::read_text(fixture("qwen3_moe.logits.json"))), rows);
    plain->hidden_states(b);
    EXPECT_FALSE(plain->take_auxiliary_loss().defined());  // output_router_logits false: transformers adds none
}

TEST(HfCheckpoint, ExpertsAreLinearSitesThatLoraTrainsAndTheCachedPathRoutesTheSame) {
    const json ref = json::parse(host::read_text(fixture("mixtral_moe.logits.json")));
    auto m = ModelSession::from_stage_dir(fixture("mixtral_moe"), registry(), at::Device(at::kCPU));
    m->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\ntarget_modules = [\"w1\", \"w2\", \"w3\"]\n"));
    EXPECT_EQ(m->trainable_parameters().size(), 2u * 3u * 4u * 2u);  // A, B x 3 sites x 4 experts x 2 layers
    std::vector<Example> rows;
    HostBatch b = fixture_batch(ref, rows);
    {
        at::NoGradGuard ng;
        for (auto& [name, t] : m->trainable_parameters())
            if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.1);
    }
    m->logits(m->hidden_states(b)).pow(2).mean().backward();
    int trained = 0;
    for (const auto& [name, t] : m->trainable_parameters())
        trained += t.grad().defined() && t.grad().abs().sum().item<double>() > 0;
    EXPECT_GT(trained, 8);  // experts that tokens were routed to
    // Decoding runs every expert weighted by its routing (no host synchronisation): the
    // same hidden states as the sparse dispatch.
    at::NoGradGuard ng;
    m->set_training(false);
    const at::Tensor sparse = m->hidden_states(b);
    auto cache = m->new_kv_cache();
    EXPECT_LT(max_abs_diff(m->hidden_states_cached(cache.get(), b), sparse), 1e-5);
}

TEST(HfCheckpoint, UnsupportedSettingsAreErrorsNamingTheKey) {
    const json base = json::parse(host::read_text(fixture("llama_gqa_tied") / "config.json"));
    const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
        {[](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; }, "architecture GPT2LMHeadModel is not supported (model plugins read: LlamaForCausalLM"},
        {[](json& c) { c.erase("architectures"); }, "no \"architectures\" entry"},
        {[](json& c) { c["hidden_act"] = "gelu"; }, "hidden_act: 'gelu' is not supported"},
        {[](json& c) { c["architectures"] = {"Qwen3ForCausalLM"}; c["layer_types"] = {"sliding_attention", "full_attention"}; },
         "layer_types: 'sliding_attention' layers are not supported"},
        {[](json& c) { c["architectures"] = {"Qwen2ForCausalLM"}; c["use_sliding_window"] = true; }, "use_sliding_window"},
        {[](json& c) { c["architectures"] = {"Gemma2ForCausalLM"}; c["hidden_activation"] = "gelu"; c["layer_types"] = {"full_attention", "full_attention"}; },
         "hidden_activation: 'gelu' is not supported"},
        {[](json& c) { c["architectures"] = {"Gemma2ForCausalLM"}; c["hidden_activation"] = "gelu_pytorch_tanh"; c.erase("layer_types"); }, "layer_types: missing"},
        {[](json& c) { c["architectures"] = {"MistralForCausalLM"}; c["sliding_window"] = 0; }, "sliding_window: must be a positive"},
        {[](json& c) { c["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; }, "rope_parameters.rope_type: 'yarn' is not supported"},
        {[](json& c) { c["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 4.0}}; }, "rope_parameters.low_freq_factor: missing"},
        {[](json& c) { c["architectures"] = {"Phi3ForCausalLM"}; c["rope_parameters"] = {{"rope_type", "default"}, {"partial_rotary_factor", 0.75}}; },
         "partial_rotary_factor: rotary embeddings over part of each head are not supported"},
        {[](json& c) { c["architectures"] = {"Phi3ForCausalLM"}; c["rope_parameters"] = {{"rope_type", "longrope"}}; },
         "rope_parameters.rope_type: 'longrope' is not supported"},
        {[](json& c) { c["architectures"] = {"Gemma3ForCausalLM"}; c["hidden_activation"] = "gelu_pytorch_tanh"; c["layer_types"] = {"full_attention", "full_attention"}; c["use_bidirectional_attention"] = true; },
         "use_bidirectional_attention: bidirectional attention"},
        {[](json& c) { c["architectures"] = {"Gemma3ForCausalLM"}; c["hidden_activation"] = "gelu_pytorch_tanh"; c["layer_types"] = {"full_attention", "full_attention"};
                       c["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}}, {"sliding_attention", {{"rope_type", "yarn"}}}}; },
         "rope_parameters.sliding_attention.rope_type: 'yarn' is not supported"},
        {[](json& c) { c["architectures"] = {"Qwen3MoeForCausalLM"}; c["num_experts"] = 4; c["num_experts_per_tok"] = 2; c["mlp_only_layers"] = {0}; },
         "mlp_only_layers: dense layers among the sparse ones are not supported"},
        {[](json& c) { c["architectures"] = {"MixtralForCausalLM"}; c["num_local_experts"] = 4; c["num_experts_per_tok"] = 2; c["router_jitter_noise"] = 0.1; },
         "router_jitter_noise: jittered routing is not supported"},
        {[](json& c) { c["architectures"] = {"MixtralForCausalLM"}; }, "num_local_experts: missing"},
        {[](json& c) { c.erase("hidden_size"); }, "hidden_size: missing"},
        {[](json& c) { c["num_key_value_heads"] = 3; }, "num_key_value_heads"},
    };
    for (const auto& [edit, want] : cases) {
        json c = base;
        edit(c);
        const std::string err = error_of([&] { section_of(c); });
        EXPECT_NE(err.find(want), std::string::npos) << "want '" << want << "' in: " << err;
        EXPECT_NE(err.find("config.json"), std::string::npos) << err;
    }
}

// A copy of a fixture with its tensors rewritten by `edit`.
fs::path edited_copy(const std::string& name, const std::function<void(std::map<std::string, at::Tensor>&)>& edit) {
    const fs::path d = temp_dir("hf_edit_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    fs::copy_file(fixture(name) / "config.json", d / "config.json");
    auto tensors = host::load_hf_tensors(fixture(name));
    edit(tensors);
    host::TensorList list(tensors.begin(), tensors.end());
    host::save_safetensors((d / "model.safetensors").string(), list);
    return d;
}

TEST(HfCheckpoint, MissingUnexpectedAndMisshapenTensorsAreNamed) {
    const auto load = [](const fs::path& d) { return error_of([&] { ModelSession::from_stage_dir(d, registry(), at::kCPU); }); };
    EXPECT_NE(load(edited_copy("qwen2_bias", [](auto& t) { t.erase("model.layers.1.self_attn.k_proj.bias"); }))
                  .find("missing tensor 'model.layers.1.self_attn.k_proj.bias'"),
              std::string::npos);
    EXPECT_NE(load(edited_copy("qwen2_bias", [](auto& t) { t["model.layers.0.mlp.extra.weight"] = at::zeros({2}); }))
                  .find("unexpected tensor 'model.layers.0.mlp.extra.weight'"),
              std::string::npos);
    EXPECT_NE(load(edited_copy("qwen2_bias", [](auto& t) { t["model.norm.weight"] = at::zeros({31}); }))
                  .find("tensor 'model.norm.weight' has shape [31], the model expects [32]"),
              std::string::npos);
    // An index naming a shard that is not there.
    const fs::path d = temp_dir("hf_missing_shard");
    fs::remove_all(d);
    fs::copy(fixture("llama_gqa_tied"), d);
    fs::remove(d / "model-00002-of-00003.safetensors");
    EXPECT_NE(load(d).find("names shard model-00002-of-00003.safetensors, which is missing"), std::string::npos) << load(d);
    // Neither a stage nor a checkpoint.
    EXPECT_NE(load(temp_dir("hf_nothing")).find("neither a stage"), std::string::npos);
}

// A stage directory written before the decoder gained options (head_dim, rope scaling,
// attention_bias) names only the keys it knew: the missing ones take their defaults.
TEST(HfCheckpoint, AStageFromBeforeNewModelOptionsStillLoads) {
    auto model = tiny_model(9);
    const fs::path d = temp_dir("old_stage");
    model->save_model(d);
    write_text_atomically(d / "stage.json", R"({"format": "fthost-stage-1", "model_plugin": "decoder", "model_config": {
        "vocab_size": 260, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}})");
    auto loaded = host::ModelSession::from_stage_dir(d, registry(), at::Device(at::kCPU));
    std::vector<Example> ex = {text_example("old stage")};
    HostBatch b = collate({{&ex[0]}});
    EXPECT_LT(max_abs_diff(loaded->logits(loaded->hidden_states(b)), model->logits(model->hidden_states(b))), 1e-6);
}

}  // namespace
}  // namespace fthost::test
