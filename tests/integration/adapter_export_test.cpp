// Adapters leave a run in PEFT's layout and merge into their base:
//  * adapter_model.safetensors has exactly PEFT's tensor names, shapes and dtypes, and
//    adapter_config.json PEFT's keys and values, for the cases PEFT 0.21.2 wrote in
//    tests/fixtures/peft_export/ (make_peft_export_fixtures.py) on the same model shape;
//  * `fthost merge` writes a model whose logits equal the unmerged stage's within 1e-5
//    (fp32) for lora, dora and qlora (whose base is the dequantised NF4 weight);
//  * over a bf16 checkpoint it writes bf16 tensors, and with --dtype fp32 the float32 fold;
//  * a qlora stage without a saved base is refused before it trains.
#include "integration/run_support.hpp"
#include "test_support.hpp"

#include "export/merge_command.hpp"
#include "io/hf_files.hpp"
#include "io/safetensors.hpp"

#include <fstream>
#include <set>

namespace fthost::test {
namespace {

using nlohmann::json;

const std::string& kData = quickstart_data();

// An SFT stage starting from "base" with the given [stage.param] body; 12 steps at a high
// learning rate, so that B and DoRA's magnitude move well away from their initial values.
std::string adapter_stage(const std::string& name, const std::string& param_body) {
    return "[[stage]]\nname = \"" + name + "\"\ninit_from = \"base\"\n[stage.param]\n" + param_body +
           "[stage.objective]\nplugin = \"sft\"\n[stage.data]\ntrain = \"" + kData +
           "train.jsonl\"\nmax_seq_len = 96\n[stage.train]\nsteps = 12\nbatch_size = 8\nlr = 1e-2\n";
}

const fs::path& trained_run() {
    static const fs::path dir = [] {
        const fs::path d = temp_dir("adapter_export");
        std::string cfg = tiny_base_config(d / "run", 11, "sft", "train.jsonl", false);
        cfg += adapter_stage("lora_qv", "plugin = \"lora\"\nr = 4\nlora_alpha = 8.0\n");
        cfg += adapter_stage("lora_all_rslora", "plugin = \"lora\"\nr = 8\nlora_alpha = 16.0\nlora_dropout = 0.05\n"
                                                "target_modules = [\"all-linear\"]\nuse_rslora = true\n");
        cfg += adapter_stage("dora_all", "plugin = \"dora\"\nr = 4\nlora_alpha = 8.0\ntarget_modules = [\"all-linear\"]\n");
        cfg += adapter_stage("qlora_all", "plugin = \"qlora\"\nr = 4\nlora_alpha = 8.0\ntarget_modules = [\"all-linear\"]\n");
        cfg += adapter_stage("qdora_all", "plugin = \"qlora\"\nuse_dora = true\nr = 4\nlora_alpha = 8.0\n"
                                          "target_modules = [\"all-linear\"]\nbnb_4bit_use_double_quant = false\n");
        write_file(d / "c.toml", cfg);
        EXPECT_EQ(run(d / "c.toml"), 0);
        return d / "run";
    }();
    return dir;
}

fs::path final_of(const std::string& stage) { return trained_run() / "stages" / stage / "final"; }

json read_json(const fs::path& p) { return json::parse(std::ifstream(p)); }

TEST(AdapterExport, TensorNamesShapesAndConfigEqualPeft) {
    for (const std::string name : {"lora_qv", "lora_all_rslora", "dora_all"}) {
        const fs::path want = fs::path(source_dir()) / "tests/fixtures/peft_export" / name;
        const json want_tensors = read_json(want / "tensors.json");
        std::map<std::string, std::string> meta;
        const auto got = host::load_safetensors((final_of(name) / "adapter_model.safetensors").string(), &meta);
        EXPECT_EQ(meta["format"], "pt") << name;
        ASSERT_EQ(got.size(), want_tensors.size()) << name;
        for (const auto& [tensor, t] : got) {
            ASSERT_TRUE(want_tensors.contains(tensor)) << name << ": PEFT has no tensor " << tensor;
            EXPECT_EQ(t.sizes().vec(), want_tensors[tensor]["shape"].get<std::vector<int64_t>>()) << name << " " << tensor;
            EXPECT_EQ(want_tensors[tensor]["dtype"], "F32") << name << " " << tensor;
            EXPECT_EQ(t.scalar_type(), at::kFloat) << name << " " << tensor;
        }
        const json want_cfg = read_json(want / "adapter_config.json");
        const json got_cfg = read_json(final_of(name) / "adapter_config.json");
        std::set<std::string> want_keys, got_keys;
        for (const auto& [k, _] : want_cfg.items()) want_keys.insert(k);
        for (const auto& [k, _] : got_cfg.items()) got_keys.insert(k);
        EXPECT_EQ(got_keys, want_keys) << name;
        for (const char* k : {"r", "lora_alpha", "lora_dropout", "use_dora", "use_rslora", "peft_type", "bias",
                              "init_lora_weights", "fan_in_fan_out", "modules_to_save"})
            EXPECT_EQ(got_cfg[k], want_cfg[k]) << name << ": " << k;
        const auto as_set = [](const json& j) { return j.get<std::set<std::string>>(); };
        EXPECT_EQ(as_set(got_cfg["target_modules"]), as_set(want_cfg["target_modules"])) << name;
        // The base it was trained on: the "base" stage's result, as an absolute path.
        EXPECT_EQ(fs::path(got_cfg["base_model_name_or_path"].get<std::string>()),
                  fs::weakly_canonical(trained_run() / "stages/base/final"));
    }
}

// Phi-3's fused projections take LoRA as PEFT's do: PEFT's own adapter over the tiny Phi-3
// checkpoint (qkv_proj and gate_up_proj adapted whole, B random) gives PEFT's logits here,
// and the adapter fthost saves over it has PEFT's tensor names, shapes and targets.
TEST(AdapterExport, Phi3FusedSitesComputeAndExportPeftsAdapter) {
    const fs::path base = fs::path(source_dir()) / "tests/fixtures/hf/phi3_fused";
    const fs::path want = fs::path(source_dir()) / "tests/fixtures/peft_export/phi3_all";
    auto m = ModelSession::from_stage_dir(base, registry(), at::Device(at::kCPU));
    m->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 8.0\ntarget_modules = [\"all-linear\"]\n"));
    const fs::path adapter = want / "adapter_model.safetensors";
    m->load_parameters(host::load_safetensors(adapter.string()), m->trainable_parameters(), adapter.string());

    const json ref = read_json(want / "logits.json");
    std::vector<Example> rows;
    for (const auto& ids : ref["input_ids"]) {
        Example e;
        e.ids = ids.get<std::vector<int64_t>>();
        e.labels = e.ids;
        rows.push_back(e);
    }
    HostBatch b = collate({{&rows[0]}, {&rows[1]}});
    at::NoGradGuard ng;
    const at::Tensor logits = m->logits(m->hidden_states(b)), expected = tensor_from_json(ref["logits"], at::kFloat);
    const at::Tensor unadapted = [&] {
        m->set_adapters_enabled(false);
        at::Tensor l = m->logits(m->hidden_states(b));
        m->set_adapters_enabled(true);
        return l;
    }();
    EXPECT_GT(max_abs_diff(unadapted, expected), 1e-2);  // the adapter matters
    EXPECT_LT(max_abs_diff(logits, expected), 1e-5);

    const fs::path out = temp_dir("phi3_export");
    m->save_final(out, base);
    const json want_tensors = read_json(want / "tensors.json");
    const auto got = host::load_safetensors((out / "adapter_model.safetensors").string());
    ASSERT_EQ(got.size(), want_tensors.size());
    for (const auto& [tensor, t] : got) {
        ASSERT_TRUE(want_tensors.contains(tensor)) << "PEFT has no tensor " << tensor;
        EXPECT_EQ(t.sizes().vec(), want_tensors[tensor]["shape"].get<std::vector<int64_t>>()) << tensor;
    }
    const auto targets = [](const fs::path& f) { return read_json(f)["target_modules"].get<std::set<std::string>>(); };
    EXPECT_EQ(targets(out / "adapter_config.json"), targets(want / "adapter_config.json"));
}

HostBatch sample_batch() {
    static std::vector<Example> ex = {text_example("aisle 7: coffee filters"), text_example("where are the eggs?"),
                                      text_example("the lazy dog, twice over")};
    return collate({{&ex[0]}, {&ex[1]}, {&ex[2]}});
}

TEST(AdapterExport, MergedModelHasTheUnmergedLogits) {
    trained_run();  // trains (with gradients) on first use
    at::NoGradGuard ng;
    for (const std::string name : {"lora_qv", "lora_all_rslora", "dora_all", "qlora_all", "qdora_all"}) {
        const fs::path out = temp_dir("merged_" + name);
        fs::remove_all(out);
        ASSERT_EQ(host::merge_command({final_of(name).string(), out.string(), "cpu"}, registry()), 0) << name;
        EXPECT_TRUE(fs::exists(out / "model.safetensors")) << name;
        EXPECT_FALSE(read_json(out / "stage.json").contains("param_plugin")) << name;
        auto unmerged = ModelSession::from_stage_dir(final_of(name), registry(), at::kCPU, /*merge_adapter=*/false);
        auto merged = ModelSession::from_stage_dir(out, registry(), at::kCPU);
        unmerged->set_training(false);
        merged->set_training(false);
        HostBatch b = sample_batch();
        const at::Tensor a = unmerged->logits(unmerged->hidden_states(b));
        const at::Tensor m = merged->logits(merged->hidden_states(b));
        const double err = max_abs_diff(a, m), scale = a.abs().max().item<double>();
        std::cout << name << ": max |merged - unmerged| = " << err << " (logits up to " << scale << ")\n";
        EXPECT_LE(err, 1e-5 * std::max(1.0, scale)) << name;
        // The adapter did something: the merged model is not the base.
        auto base = ModelSession::from_stage_dir(trained_run() / "stages/base/final", registry(), at::kCPU);
        base->set_training(false);
        EXPECT_GT(max_abs_diff(base->logits(base->hidden_states(b)), m), 1e-3) << name;
    }
}

// `m` (loaded from `base`) with a LoRA adapter whose B matrices are moved off 0, so that
// the merge changes the weights (no training needed: only the fold is under test), saved
// as the stage directory `stage`.
void save_lora_stage(ModelSession& m, const fs::path& base, const fs::path& stage) {
    m.apply_param(plugin(FT_KIND_PARAM, "lora", "r = 4\nlora_alpha = 8.0\n"));
    {
        at::manual_seed(3);
        at::NoGradGuard ng;
        for (auto& [name, t] : m.trainable_parameters())
            if (name.find("lora_B") != std::string::npos) t.normal_(0.0, 0.05);
    }
    m.save_final(stage, base);
}

// A LoRA stage over the bf16 Llama checkpoint.
fs::path lora_stage_over_bf16_checkpoint() {
    const fs::path base = fs::path(source_dir()) / "tests/fixtures/hf/llama_gqa_llama3";
    const fs::path stage = temp_dir("merge_dtype_stage");
    fs::remove_all(stage);
    fs::create_directories(stage);
    save_lora_stage(*ModelSession::from_stage_dir(base, registry(), at::kCPU), base, stage);
    return stage;
}

// `fthost merge` writes each tensor in the dtype the base stored it in (bf16 here: the
// float32 fold rounded once), and `--dtype fp32` the float32 fold itself, W + s·BA, with
// config.json's dtype saying float32.
TEST(AdapterExport, MergeKeepsTheBasesDtypeOrWritesFp32) {
    const fs::path base = fs::path(source_dir()) / "tests/fixtures/hf/llama_gqa_llama3";
    const fs::path stage = lora_stage_over_bf16_checkpoint();
    const fs::path as_base = temp_dir("merged_as_base"), as_fp32 = temp_dir("merged_as_fp32");
    for (const auto& d : {as_base, as_fp32}) fs::remove_all(d);
    ASSERT_EQ(host::merge_command({stage.string(), as_base.string(), "cpu"}, registry()), 0);
    ASSERT_EQ(host::merge_command({stage.string(), as_fp32.string(), "cpu", "fp32"}, registry()), 0);

    const auto stored = host::load_hf_tensors(base);
    const auto adapter = host::load_safetensors((stage / "adapter_model.safetensors").string());
    const auto written_base = host::load_hf_tensors(as_base), written_fp32 = host::load_hf_tensors(as_fp32);
    // The fold as the host computes it, in memory.
    auto merged = ModelSession::from_stage_dir(stage, registry(), at::kCPU);
    ASSERT_EQ(written_base.size(), stored.size());
    ASSERT_EQ(written_fp32.size(), stored.size());
    int folded = 0;
    for (const auto& [name, w] : merged->model_parameters()) {
        ASSERT_EQ(w.scalar_type(), at::kFloat) << name;
        ASSERT_EQ(stored.at(name).scalar_type(), at::kBFloat16) << name;
        EXPECT_EQ(written_base.at(name).scalar_type(), at::kBFloat16) << name;
        EXPECT_TRUE(at::equal(written_base.at(name), w.to(at::kBFloat16))) << name;
        EXPECT_EQ(written_fp32.at(name).scalar_type(), at::kFloat) << name;
        EXPECT_TRUE(at::equal(written_fp32.at(name), w)) << name;
        // Adapted sites: W (bf16, widened) + (lora_alpha / r) · B A, computed here from the files.
        const std::string site = name.substr(0, name.size() - std::string(".weight").size());
        const auto a = adapter.find("base_model.model." + site + ".lora_A.weight");
        if (a == adapter.end()) continue;
        ++folded;
        const at::Tensor& b = adapter.at("base_model.model." + site + ".lora_B.weight");
        const at::Tensor want = stored.at(name).to(at::kFloat) + 2.0 * at::matmul(b, a->second);
        EXPECT_LE(max_abs_diff(written_fp32.at(name), want), 1e-6) << name;
        // fp32 keeps what bf16 rounds away.
        EXPECT_GT(max_abs_diff(written_fp32.at(name), written_base.at(name).to(at::kFloat)), 0.0) << name;
    }
    EXPECT_GT(folded, 0);
    const json cfg_base = read_json(as_base / "config.json"), cfg_fp32 = read_json(as_fp32 / "config.json");
    EXPECT_EQ(cfg_base, read_json(base / "config.json"));
    EXPECT_EQ(cfg_fp32["dtype"], "float32");
    json rest = cfg_fp32;
    rest["dtype"] = "bfloat16";
    EXPECT_EQ(rest, cfg_base);  // nothing else in config.json changes
    EXPECT_THROW(host::merge_command({stage.string(), temp_dir("merged_bad").string(), "cpu", "fp16"}, registry()),
                 Error);
}

// The same over an fthost stage whose weights are bf16 (what full's weight_dtype =
// "bfloat16" saves): the merge is bf16 too, the float32 fold rounded once.
TEST(AdapterExport, MergeOverABf16StageKeepsBf16) {
    const fs::path base = temp_dir("merge_bf16_base"), stage = temp_dir("merge_bf16_stage"), out = temp_dir("merge_bf16_out");
    for (const auto& d : {base, stage, out}) fs::remove_all(d);
    fs::create_directories(base);
    fs::create_directories(stage);
    {
        at::manual_seed(5);
        ModelSession fresh(plugin(FT_KIND_MODEL, "decoder", kTinyDecoder), registry(), at::Device(at::kCPU));
        fresh.save_model(base, kDefaultMaxShardBytes, at::kBFloat16);
    }
    save_lora_stage(*ModelSession::from_stage_dir(base, registry(), at::kCPU, true, WeightDtypes::as_stored), base, stage);
    ASSERT_EQ(host::merge_command({stage.string(), out.string(), "cpu"}, registry()), 0);
    const auto written = host::load_safetensors((out / "model.safetensors").string());
    auto merged = ModelSession::from_stage_dir(stage, registry(), at::kCPU);
    ASSERT_EQ(written.size(), merged->model_parameters().size());
    for (const auto& [name, w] : merged->model_parameters()) {
        EXPECT_EQ(written.at(name).scalar_type(), at::kBFloat16) << name;
        EXPECT_TRUE(at::equal(written.at(name), w.to(at::kBFloat16))) << name;
    }
}

TEST(AdapterExport, MergeRejectsWhatIsNotAStageDirectory) {
    const fs::path nowhere = temp_dir("merge_nowhere");
    try {
        host::merge_command({nowhere.string(), (nowhere / "out").string(), "cpu"}, registry());
        FAIL() << "merge of a folder without stage.json succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not a stage directory"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(nowhere / "out"));
}

TEST(AdapterExport, QloraWithoutASavedBaseIsRefusedBeforeTraining) {
    const fs::path d = temp_dir("qlora_no_base");
    std::string cfg = tiny_base_config(d / "run", 3, "sft", "train.jsonl", false);
    const auto at = cfg.find("plugin = \"full\"");
    cfg.replace(at, std::string("plugin = \"full\"").size(), "plugin = \"qlora\"");
    write_file(d / "c.toml", cfg);
    try {
        run(d / "c.toml");
        FAIL() << "a qlora stage with nowhere to read its base from ran";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("set init_from"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(lines_of(d / "run", "base").empty()) << "it trained before refusing";
    EXPECT_EQ(read_json(d / "run/summary.json")["status"], "failed");
}

}  // namespace
}  // namespace fthost::test
