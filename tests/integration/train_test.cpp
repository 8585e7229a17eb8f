// Training end to end through the run driver: eval loss falls; a run interrupted after
// a checkpoint and resumed reproduces the uninterrupted run's losses exactly; the run
// directory holds what DESIGN.md §6 promises.
#include "integration/run_support.hpp"
#include "op_counter.hpp"
#include "registry/build_info.hpp"
#include "train/checkpoint.hpp"
#include "io/atomic_file.hpp"
#include "train/stop_signal.hpp"

#include <csignal>

#include <ATen/Parallel.h>

namespace fthost::test {
namespace {

std::string two_stage_config(const fs::path& out, int64_t finetune_steps, int64_t checkpoint_every) {
    const std::string data = std::string(source_dir()) + "/data/quickstart/";
    return "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 3\n"
           "[[stage]]\nname = \"pretrain\"\n"
           "[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n"
           "num_attention_heads = 4\nnum_key_value_heads = 2\n"
           "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"cpt\"\n"
           "[stage.data]\ntrain = \"" + data + "corpus.jsonl\"\neval_fraction = 0.02\nmax_seq_len = 128\npacking = true\n"
           "[stage.train]\nsteps = 4\nbatch_size = 4\nlr = 3e-3\nlog_every = 1\n"
           "[[stage]]\nname = \"finetune\"\ninit_from = \"pretrain\"\n"
           "[stage.param]\nplugin = \"lora\"\nr = 4\nlora_dropout = 0.1\ntarget_modules = [\"all-linear\"]\n"
           "[stage.objective]\nplugin = \"sft\"\n"
           "[stage.data]\ntrain = \"" + data + "train.jsonl\"\neval = \"" + data + "eval.jsonl\"\nmax_seq_len = 96\n"
           "[stage.train]\nsteps = " + std::to_string(finetune_steps) + "\nbatch_size = 4\ngrad_accum = 2\nlr = 3e-3\n"
           "warmup_steps = 2\nlog_every = 1\ncheckpoint_every = " + std::to_string(checkpoint_every) + "\n"
           "[stage.eval]\nmax_examples = 8\nmax_new_tokens = 4\n[[stage.grader]]\nplugin = \"exact_match\"\n";
}

std::vector<std::tuple<std::string, int64_t, double>> losses(const fs::path& run) {
    std::vector<std::tuple<std::string, int64_t, double>> out;
    for (const auto& m : metrics(run))
        if (m.contains("loss")) out.emplace_back(m["stage"], m["step"], m["loss"]);
    return out;
}

// [run] precision = "bf16": forward passes autocast to bfloat16 while weights, gradients
// and optimizer state stay fp32. The losses follow the fp32 run's closely (bf16 keeps 8
// bits of mantissa) and the saved weights are fp32.
TEST(Training, Bf16AutocastTracksTheFp32Run) {
    at::set_num_threads(2);
    auto dir = temp_dir("bf16");
    const std::string data = std::string(source_dir()) + "/data/quickstart/";
    std::vector<std::vector<double>> runs;
    std::vector<int64_t> bf16_linears, attention_calls;  // per run: linear layers that gave bf16; attention calls
    for (const std::string run_name : {"fp32", "bf16", "bf16_checkpointed"}) {
        const std::string precision = run_name == "fp32" ? "fp32" : "bf16";
        const std::string ckpt = run_name == "bf16_checkpointed" ? "true" : "false";
        const fs::path out = dir / run_name;
        write_file(dir / (run_name + ".toml"),
                   "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 5\nprecision = \"" + precision + "\"\n"
                   "[[stage]]\nname = \"lm\"\n[stage.model]\nplugin = \"decoder\"\nhidden_size = 64\nintermediate_size = 128\n"
                   "num_hidden_layers = 2\nnum_attention_heads = 4\n[stage.param]\nplugin = \"full\"\n"
                   "[stage.objective]\nplugin = \"cpt\"\n[stage.data]\ntrain = \"" + data + "corpus.jsonl\"\n"
                   "max_seq_len = 128\npacking = true\n[stage.train]\nsteps = 12\nbatch_size = 4\nlr = 3e-3\nlog_every = 1\n"
                   "activation_checkpointing = " + ckpt + "\n");
        {
            OpCounter linear("aten::linear"), attention("aten::scaled_dot_product_attention");
            ASSERT_EQ(run(dir / (run_name + ".toml")), 0) << run_name;
            bf16_linears.push_back(linear.bf16_calls());
            attention_calls.push_back(attention.calls());
        }
        runs.emplace_back();
        for (const auto& m : metrics(out))
            if (m.contains("loss")) runs.back().push_back(m["loss"]);
        for (const auto& [name, t] : load_safetensors((out / "stages/lm/final/model.safetensors").string()))
            EXPECT_EQ(t.scalar_type(), at::kFloat) << run_name << " " << name;
    }
    ASSERT_EQ(runs[0].size(), 12u);
    ASSERT_EQ(runs[1].size(), 12u);
    for (size_t i = 0; i < 12; ++i) EXPECT_NEAR(runs[1][i], runs[0][i], 0.03 * runs[0][i]) << "step " << i + 1;
    EXPECT_LT(runs[1].back(), runs[1].front() * 0.8);  // and it learns
    // ... and bf16 did run: the linear layers returned bf16 (none in the fp32 run), and the
    // losses differ from fp32's beyond the rounding an fp32 rerun would show (none: a
    // rerun is bit for bit).
    EXPECT_EQ(bf16_linears[0], 0);
    EXPECT_GT(bf16_linears[1], 0);
    double widest = 0;
    for (size_t i = 0; i < 12; ++i) widest = std::max(widest, std::abs(runs[1][i] - runs[0][i]) / runs[0][i]);
    EXPECT_GT(widest, 1e-4) << "the bf16 run's losses are fp32's: autocast did nothing";
    // Checkpointed layers are recomputed under the same autocast: the same run, with
    // each layer's attention run again in backward (2 layers x 12 steps at least).
    ASSERT_EQ(runs[2].size(), 12u);
    for (size_t i = 0; i < 12; ++i) EXPECT_NEAR(runs[2][i], runs[1][i], 1e-5) << "step " << i + 1;
    EXPECT_GE(attention_calls[2] - attention_calls[1], 2 * 12);
}

// Full fine-tuning with weight_dtype = "bfloat16": weights and gradients bf16, AdamW's
// float32 masters and moments in the optimizer state. The losses track the float32 run's,
// the saved weights are bf16, a checkpoint's weights are its masters rounded, and a run
// stopped after that checkpoint and resumed gives the uninterrupted losses bit for bit
// (the masters come back with the moments: resuming from the bf16 weights would not).
TEST(Training, FullFineTuningInBf16TracksFloat32AndResumesExactly) {
    at::set_num_threads(2);
    auto dir = temp_dir("full_bf16");
    const auto config = [&](const std::string& name, const std::string& dtype) {
        write_file(dir / (name + ".toml"),
                   "[run]\noutput_dir = \"" + (dir / name).string() + "\"\nseed = 5\n"
                   "[[stage]]\nname = \"lm\"\n[stage.model]\nplugin = \"decoder\"\nhidden_size = 64\n"
                   "intermediate_size = 128\nnum_hidden_layers = 2\nnum_attention_heads = 4\n"
                   "[stage.param]\nplugin = \"full\"\nweight_dtype = \"" + dtype + "\"\n"
                   "[stage.objective]\nplugin = \"cpt\"\n[stage.data]\ntrain = \"" + quickstart_data() + "corpus.jsonl\"\n"
                   "max_seq_len = 128\npacking = true\n[stage.train]\nsteps = 10\nbatch_size = 4\nlr = 3e-3\nlog_every = 1\n"
                   "weight_decay = 0.1\ncheckpoint_every = 4\n");
        return dir / (name + ".toml");
    };
    ASSERT_EQ(run(config("fp32", "float32")), 0);
    ASSERT_EQ(run(config("bf16", "bfloat16")), 0);
    ASSERT_EQ(run(config("resumed", "bfloat16"), "", 6), 3);  // stopped after step 6: checkpoint at 4
    ASSERT_EQ(run(config("resumed", "bfloat16"), (dir / "resumed").string()), 0);

    const auto fp32 = losses(dir / "fp32"), bf16 = losses(dir / "bf16"), resumed = losses(dir / "resumed");
    ASSERT_EQ(fp32.size(), 10u);
    ASSERT_EQ(bf16.size(), 10u);
    ASSERT_EQ(resumed.size(), 10u);
    double widest = 0;
    for (size_t i = 0; i < 10; ++i) {
        const double a = std::get<2>(fp32[i]), b = std::get<2>(bf16[i]);
        EXPECT_NEAR(b, a, 0.03 * a) << "step " << i + 1;
        widest = std::max(widest, std::abs(b - a) / a);
        EXPECT_EQ(std::get<2>(resumed[i]), b) << "step " << i + 1;
    }
    EXPECT_GT(widest, 1e-4) << "the bf16 run's losses are fp32's: its weights were not bf16";
    EXPECT_LT(std::get<2>(bf16.back()), 0.8 * std::get<2>(bf16.front()));  // and it learns

    for (const auto& [name, t] : load_safetensors((dir / "bf16/stages/lm/final/model.safetensors").string()))
        EXPECT_EQ(t.scalar_type(), at::kBFloat16) << name;
    const fs::path ckpt = dir / "bf16/stages/lm/checkpoints/step-4";
    const auto weights = load_safetensors((ckpt / "trainable.safetensors").string());
    const auto state = load_safetensors((ckpt / "optimizer.safetensors").string());
    ASSERT_FALSE(weights.empty());
    for (const auto& [name, w] : weights) {
        ASSERT_TRUE(state.count("master." + name)) << name;
        const at::Tensor& master = state.at("master." + name);
        EXPECT_EQ(master.scalar_type(), at::kFloat) << name;
        EXPECT_EQ(state.at("exp_avg." + name).scalar_type(), at::kFloat) << name;
        EXPECT_TRUE(at::equal(w, master.to(at::kBFloat16))) << name;
    }
}

// A mixture of experts with its load-balancing loss on: every training line reports the
// auxiliary loss, and `loss` carries it (the same run without it logs smaller losses by
// about coef x aux, from the same start); with the coefficient at 0 there is none.
TEST(Training, AMixtureOfExpertsAddsItsLoadBalancingLossToTheTrainingLoss) {
    const auto run_with = [](const std::string& name, double coef) {
        const fs::path d = temp_dir(name);
        std::string cfg = tiny_base_config(d / "run", 5, "sft", "train.jsonl", true);
        cfg.replace(cfg.find("num_key_value_heads = 2\n"), 24,
                    "num_key_value_heads = 2\nnum_experts = 4\nnum_experts_per_tok = 2\nrouter_aux_loss_coef = " +
                        std::to_string(coef) + "\n");
        write_file(d / "c.toml", cfg);
        EXPECT_EQ(run(d / "c.toml"), 0);
        return lines_of(d / "run", "base");
    };
    const auto with = run_with("moe-aux", 0.5), without = run_with("moe-noaux", 0.0);
    ASSERT_EQ(with.size(), 3u);
    ASSERT_EQ(without.size(), 3u);
    for (const auto& l : without) EXPECT_FALSE(l.contains("auxiliary_loss")) << l.dump();
    for (const auto& l : with) {
        ASSERT_TRUE(l.contains("auxiliary_loss")) << l.dump();
        const double aux = l["auxiliary_loss"].get<double>();  // 0.5 x E sum_e f_e p_e: 1 when perfectly balanced
        EXPECT_GT(aux, 0.5) << l.dump();
        EXPECT_LT(aux, 0.5 * 4) << l.dump();
    }
    // Step 1 starts from the same weights: its loss differs by exactly the auxiliary term.
    EXPECT_NEAR(with[0]["loss"].get<double>() - without[0]["loss"].get<double>(), with[0]["auxiliary_loss"].get<double>(),
                1e-4);
}

TEST(Training, EvalLossFallsAndRunDirectoryIsComplete) {
    at::set_num_threads(2);
    auto dir = temp_dir("e2e");
    const std::string data = std::string(source_dir()) + "/data/quickstart/";
    write_file(dir / "c.toml", "[run]\noutput_dir = \"" + (dir / "run").string() + "\"\n"
               "[[stage]]\nname = \"lm\"\n[stage.model]\nplugin = \"decoder\"\nhidden_size = 64\nintermediate_size = 128\n"
               "num_hidden_layers = 2\nnum_attention_heads = 4\n[stage.param]\nplugin = \"full\"\n"
               "[stage.objective]\nplugin = \"cpt\"\n[stage.data]\ntrain = \"" + data + "corpus.jsonl\"\n"
               "eval_fraction = 0.02\nmax_seq_len = 128\npacking = true\n"
               "[stage.train]\nsteps = 40\nbatch_size = 8\nlr = 3e-3\nwarmup_steps = 4\neval_every = 5\nlog_every = 5\n");
    ASSERT_EQ(run(dir / "c.toml"), 0);
    std::vector<double> eval;
    for (const auto& m : metrics(dir / "run"))
        if (m.contains("eval/loss")) eval.push_back(m["eval/loss"]);
    ASSERT_GE(eval.size(), 8u);
    EXPECT_LT(eval.back(), eval.front() * 0.7) << "eval loss " << eval.front() << " -> " << eval.back();
    for (const char* f : {"config.toml", "manifest.json", "metrics.jsonl", "summary.json", "stages/lm/final/stage.json",
                          "stages/lm/final/model.safetensors"})
        EXPECT_TRUE(fs::exists(dir / "run" / f)) << f;
    auto summary = nlohmann::json::parse(read_text(dir / "run/summary.json"));
    EXPECT_EQ(summary["status"], "completed");
    EXPECT_EQ(summary["stages"][0]["steps"], 40);
    EXPECT_DOUBLE_EQ(summary["stages"][0]["eval"]["loss"].get<double>(), eval.back());
    auto manifest = nlohmann::json::parse(read_text(dir / "run/manifest.json"));
    EXPECT_EQ(manifest["plugins"].size(), 3u);
    EXPECT_EQ(manifest["plugins"][0]["sha256"].get<std::string>().size(), 64u);
    EXPECT_TRUE(manifest.contains("finished"));
    // What built the run, from the same source as `fthost --version`.
    EXPECT_EQ(manifest["build"]["version"], build_info().version);
    EXPECT_EQ(manifest["fthost_version"], build_info().version);
    EXPECT_EQ(manifest["build"]["abi"], std::to_string(FTHOST_ABI_MAJOR) + "." + std::to_string(FTHOST_ABI_MINOR));
    EXPECT_EQ(manifest["build"]["torch"].get<std::string>().rfind(torch_major_minor(), 0), 0u);
    EXPECT_FALSE(manifest["build"]["torch_loaded_from"].get<std::string>().empty());
    // A second run into the same directory is refused; nothing in it changes.
    const auto before = read_text(dir / "run/summary.json");
    EXPECT_THROW(run(dir / "c.toml"), Error);
    EXPECT_EQ(read_text(dir / "run/summary.json"), before);
}

TEST(Training, ResumeReproducesTheUninterruptedLossesExactly) {
    at::set_num_threads(2);
    auto dir = temp_dir("resume");
    write_file(dir / "a.toml", two_stage_config(dir / "a", 8, 3));
    write_file(dir / "b.toml", two_stage_config(dir / "b", 8, 3));
    ASSERT_EQ(run(dir / "a.toml"), 0);

    // b stops after step 5 of the finetune stage (checkpoint at step 3), then resumes.
    ASSERT_EQ(run(dir / "b.toml", "", 5), 3);
    auto interrupted = nlohmann::json::parse(read_text(dir / "b/summary.json"));
    EXPECT_EQ(interrupted["status"], "interrupted");
    EXPECT_TRUE(fs::exists(dir / "b/stages/finetune/checkpoints/step-3/trainer_state.json"));
    EXPECT_FALSE(fs::exists(dir / "b/stages/finetune/final"));
    ASSERT_EQ(run(dir / "b.toml", (dir / "b").string()), 0);

    auto la = losses(dir / "a"), lb = losses(dir / "b");
    ASSERT_EQ(la.size(), 4u + 8u);
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
        EXPECT_EQ(std::get<0>(la[i]), std::get<0>(lb[i]));
        EXPECT_EQ(std::get<1>(la[i]), std::get<1>(lb[i]));
        EXPECT_EQ(std::get<2>(la[i]), std::get<2>(lb[i])) << "step " << std::get<1>(la[i]) << " of " << std::get<0>(la[i]);
    }
    auto sa = nlohmann::json::parse(read_text(dir / "a/summary.json"));
    auto sb = nlohmann::json::parse(read_text(dir / "b/summary.json"));
    EXPECT_EQ(sa["stages"][1]["eval"], sb["stages"][1]["eval"]);
    EXPECT_EQ(sa["stages"][1]["base_eval"], sb["stages"][1]["base_eval"]);
    // The final adapter references the pretrain stage and reloads to the same model.
    auto stage = nlohmann::json::parse(read_text(dir / "b/stages/finetune/final/stage.json"));
    EXPECT_EQ(stage["base"], "../../pretrain/final");
    EXPECT_TRUE(fs::exists(dir / "b/stages/finetune/final/adapter_model.safetensors"));
}

// A stop request (what SIGINT/SIGTERM set; tests/integration/cli_test.sh sends the real
// signals mid-stage) that arrives before a stage starts: the run is "interrupted" with no
// stage begun, exits 128 + 15, and --resume says the stage starts from step 1.
TEST(Training, AStopRequestInterruptsTheRunAndResumeFinishesIt) {
    const fs::path dir = temp_dir("stop_request");
    write_file(dir / "c.toml", two_stage_config(dir / "run", 3, 0));
    request_stop(SIGTERM);
    const int rc = run(dir / "c.toml");
    clear_stop_request();
    EXPECT_EQ(rc, 128 + SIGTERM);
    const auto stopped = nlohmann::json::parse(read_text(dir / "run/summary.json"));
    EXPECT_EQ(stopped["status"], "interrupted");
    EXPECT_TRUE(stopped["stages"].empty());
    testing::internal::CaptureStderr();
    EXPECT_EQ(run(dir / "c.toml", (dir / "run").string()), 0);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("stage 'pretrain' has no checkpoint to resume from: it starts again from step 1"), std::string::npos)
        << err;
    EXPECT_EQ(nlohmann::json::parse(read_text(dir / "run/summary.json"))["status"], "completed");
}

// What an interrupted checkpoint save leaves (a second signal mid-save, SIGKILL) is
// removed (on resume and before every save): a stop checkpoint is written off schedule
// and never replaced, so nothing else would ever clean it (found by
// bench/kill_campaign.sh). Complete checkpoints stay.
TEST(Training, PartialCheckpointsAreRemoved) {
    const fs::path ckpts = temp_dir("partial_ckpt") / "checkpoints";
    fs::create_directories(ckpts / "step-10");
    write_file(ckpts / "step-10/trainer_state.json", "{}");
    fs::create_directories(ckpts / ".tmp-step-11");
    write_file(ckpts / ".tmp-step-11/.tmp-optimizer.safetensors-123", "half");
    fs::create_directories(ckpts / ".old-step-4");
    fs::create_directories(ckpts / "step-5");  // pruning cut short: trainer_state.json went first
    write_file(ckpts / "step-5/optimizer.safetensors", "rest");
    host::remove_partial_checkpoints(ckpts);
    EXPECT_FALSE(fs::exists(ckpts / ".tmp-step-11"));
    EXPECT_FALSE(fs::exists(ckpts / ".old-step-4"));
    EXPECT_FALSE(fs::exists(ckpts / "step-5"));
    EXPECT_TRUE(fs::exists(ckpts / "step-10/trainer_state.json"));
    EXPECT_EQ(host::latest_checkpoint(ckpts), ckpts / "step-10");
}

TEST(Training, ResumeRefusesADifferentConfig) {
    auto dir = temp_dir("resume-diff");
    write_file(dir / "a.toml", two_stage_config(dir / "a", 4, 2));
    ASSERT_EQ(run(dir / "a.toml", "", 3), 3);
    write_file(dir / "a.toml", two_stage_config(dir / "a", 5, 2));
    EXPECT_THROW(run(dir / "a.toml", (dir / "a").string()), Error);
    EXPECT_THROW(run(dir / "a.toml", (dir / "nowhere").string()), Error);
}

std::string sft_config(const fs::path& out, const std::string& train_extra, const std::string& lr = "1e-2") {
    const std::string data = std::string(source_dir()) + "/data/quickstart/";
    return "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 5\n"
           "[[stage]]\nname = \"sft\"\n[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\n"
           "num_hidden_layers = 1\n[stage.param]\nplugin = \"lora\"\n[stage.objective]\nplugin = \"sft\"\n"
           "[stage.data]\ntrain = \"" + data + "train.jsonl\"\neval = \"" + data + "eval.jsonl\"\nmax_seq_len = 96\n"
           "shuffle = false\n[stage.train]\nlog_every = 1\nlr = " + lr + "\n" + train_extra;
}

TEST(Training, GradientAccumulationEqualsOneLargeBatch) {
    // The loss is one per-token mean over the effective batch: 2 micro-batches of 2 rows
    // must train exactly like 1 batch of 4 rows (up to float rounding).
    auto dir = temp_dir("ga");
    write_file(dir / "a.toml", sft_config(dir / "a", "steps = 4\nbatch_size = 4\ngrad_accum = 1\n"));
    write_file(dir / "b.toml", sft_config(dir / "b", "steps = 4\nbatch_size = 2\ngrad_accum = 2\n"));
    ASSERT_EQ(run(dir / "a.toml"), 0);
    ASSERT_EQ(run(dir / "b.toml"), 0);
    auto la = losses(dir / "a"), lb = losses(dir / "b");
    ASSERT_EQ(la.size(), 4u);
    ASSERT_EQ(lb.size(), 4u);
    for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(std::get<2>(la[i]), std::get<2>(lb[i]), 1e-5) << "step " << i + 1;
}

TEST(Training, EarlyStoppingStopsWhenEvalLossStopsImproving) {
    // A learning rate far below float resolution leaves the weights unchanged, so the
    // eval loss never improves after the first evaluation.
    auto dir = temp_dir("early");
    write_file(dir / "a.toml", sft_config(dir / "a", "steps = 20\nbatch_size = 2\neval_every = 2\n"
                                                     "early_stopping_patience = 2\n", "1e-20"));
    ASSERT_EQ(run(dir / "a.toml"), 0);
    auto summary = nlohmann::json::parse(read_text(dir / "a/summary.json"));
    EXPECT_EQ(summary["stages"][0]["status"], "early_stopped");
    EXPECT_EQ(summary["stages"][0]["steps"], 6);  // evals at 2 (best), 4 and 6 (no better)
    EXPECT_TRUE(fs::exists(dir / "a/stages/sft/final/adapter_model.safetensors"));
}

TEST(Training, AFailedStageIsRecordedInTheSummary) {
    auto dir = temp_dir("fail");
    write_file(dir / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"broken\"\n");
    std::string cfg = sft_config(dir / "a", "steps = 2\nbatch_size = 2\n");
    const std::string train = std::string(source_dir()) + "/data/quickstart/train.jsonl";
    cfg.replace(cfg.find(train), train.size(), (dir / "bad.jsonl").string());
    write_file(dir / "a.toml", cfg);
    EXPECT_THROW(run(dir / "a.toml"), Error);
    auto summary = nlohmann::json::parse(read_text(dir / "a/summary.json"));
    EXPECT_EQ(summary["status"], "failed");
    EXPECT_EQ(summary["stages"][0]["status"], "failed");
    EXPECT_NE(summary["stages"][0]["error"].get<std::string>().find("bad.jsonl:2: malformed JSON"), std::string::npos);
    EXPECT_FALSE(fs::exists(dir / "a/stages/sft/final"));
    // Fixed data, then --resume: the stage starts over (no checkpoint) and completes.
    write_file(dir / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"repaired\"}\n");
    ASSERT_EQ(run(dir / "a.toml", (dir / "a").string()), 0);
    EXPECT_EQ(nlohmann::json::parse(read_text(dir / "a/summary.json"))["status"], "completed");
    EXPECT_EQ(losses(dir / "a").size(), 2u);
}

// What final/ holds is the model the stage trained: reloaded, it gives that model's
// logits (held before the trainer freed it), and not the base's.
TEST(Training, SavedStageReloadsToTheSameLogits) {
    auto dir = temp_dir("reload");
    write_file(dir / "a.toml", two_stage_config(dir / "a", 2, 0));
    std::vector<Example> ex = {text_example("query: milk\ncategory:")};
    HostBatch b = collate({{&ex[0]}});
    at::Tensor trained;
    RunRequest req{(dir / "a.toml").string(), {}, "", {}};
    req.stage_options.quiet = true;
    req.stage_options.on_trained_model = [&](const std::string& stage, ModelSession& model) {
        if (stage != "finetune") return;
        at::NoGradGuard ng;
        model.set_training(false);
        trained = model.logits(model.hidden_states(b));
    };
    ASSERT_EQ(run_command(req, registry()), 0);
    ASSERT_TRUE(trained.defined());
    auto reloaded = ModelSession::from_stage_dir(dir / "a/stages/finetune/final", registry(), at::Device(at::kCPU));
    at::NoGradGuard ng;
    const at::Tensor logits = reloaded->logits(reloaded->hidden_states(b));
    // Equal to float32 rounding (1.8e-7 seen): the reloaded adapters are the trained ones.
    const double reload_gap = max_abs_diff(logits, trained);
    EXPECT_LT(reload_gap, 1e-5);
    auto base = ModelSession::from_stage_dir(dir / "a/stages/pretrain/final", registry(), at::Device(at::kCPU));
    const double base_gap = max_abs_diff(logits, base->logits(base->hidden_states(b)));
    EXPECT_GT(base_gap, 1e-3) << "the stage's training did not move the model";
    EXPECT_GT(base_gap, 1000 * reload_gap);
}

}  // namespace
}  // namespace fthost::test
