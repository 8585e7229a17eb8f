// Preference and distillation stages end to end through the run driver, on a tiny
// decoder: the first step's loss is what the objective gives when the policy equals its
// reference (log 2 for DPO, 1/2 for KTO, 0 divergence for a teacher equal to the
// student), the reference of full fine-tuning is a frozen copy and precomputing it
// changes nothing, TRL's metric names reach metrics.jsonl and the summary, and bad
// combinations fail with a message that names the problem.
#include "integration/run_support.hpp"
#include "io/atomic_file.hpp"

#include <ATen/Parallel.h>

#include <cmath>

namespace fthost::test {
namespace {

const std::string& kData = quickstart_data();

// [run] plus a 3-step pre-training stage "base" that later stages start from.
std::string base_config(const fs::path& out) { return tiny_base_config(out, 5, "cpt", "corpus.jsonl", true); }

// The first 24 rows of a bundled file, as a small eval set.
fs::path head_of(const std::string& name, const fs::path& dir, int n = 24) {
    std::ifstream in(kData + name);
    std::string text, line;
    for (int i = 0; i < n && std::getline(in, line); ++i) text += line + "\n";
    write_file(dir / name, text);
    return dir / name;
}

std::string stage(const std::string& name, const std::string& objective, const std::string& param,
                  const std::string& train_file, const fs::path& eval_file, const std::string& extra_train = "",
                  const std::string& extra_stage = "init_from = \"base\"\n") {
    return "[[stage]]\nname = \"" + name + "\"\n" + extra_stage + "[stage.param]\nplugin = \"" + param + "\"\n" +
           (param == "lora" ? "r = 4\ntarget_modules = [\"all-linear\"]\nlora_dropout = 0.2\n" : "") +
           "[stage.objective]\n" + objective + "\n[stage.data]\ntrain = \"" + kData + train_file + "\"\neval = \"" +
           eval_file.string() + "\"\nmax_seq_len = 96\n[stage.train]\nsteps = 3\nbatch_size = 4\nlr = 1e-3\nlog_every = 1\n" +
           extra_train + "[stage.eval]\nmax_new_tokens = 4\n[[stage.grader]]\nplugin = \"exact_match\"\n";
}

TEST(PreferenceTraining, DpoStartsAtLog2WithAdaptersOrAFrozenCopy) {
    at::set_num_threads(2);
    auto dir = temp_dir("dpo");
    const fs::path eval = head_of("preference_eval.jsonl", dir);
    write_file(dir / "c.toml", base_config(dir / "run") +
                                   stage("dpo_lora", "plugin = \"dpo\"", "lora", "preference_train.jsonl", eval) +
                                   stage("dpo_full", "plugin = \"dpo\"\nrpo_alpha = 0.5", "full", "preference_train.jsonl", eval));
    ASSERT_EQ(run(dir / "c.toml"), 0);
    for (const char* name : {"dpo_lora", "dpo_full"}) {
        SCOPED_TRACE(name);
        const auto lines = lines_of(dir / "run", name);
        ASSERT_EQ(lines.size(), 3u);
        // Policy == reference at step 1 (B = 0 / the copy), so h = 0 and the sigmoid loss
        // is log 2; the RPO term adds its NLL.
        const bool with_rpo = std::string(name) == "dpo_full";  // rpo_alpha = 0.5
        ASSERT_EQ(lines[0].contains("nll_loss"), with_rpo);
        const double rpo = with_rpo ? 0.5 * lines[0]["nll_loss"].get<double>() : 0.0;
        if (with_rpo) EXPECT_GT(rpo, 0.1);  // a byte model's NLL: the term moves the loss well past rounding
        EXPECT_NEAR(lines[0]["loss"].get<double>(), std::log(2.0) + rpo, 1e-5);
        EXPECT_NEAR(lines[0]["rewards/margins"].get<double>(), 0.0, 1e-6);
        EXPECT_DOUBLE_EQ(lines[0]["rewards/accuracies"].get<double>(), 0.0);
        for (const char* k : {"rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"})
            EXPECT_TRUE(lines[0].contains(k)) << k;
        // The policy moved away from the reference afterwards.
        EXPECT_GT(std::abs(lines[2]["rewards/margins"].get<double>()), 0.0);
        const auto s = summary_of(dir / "run", name);
        EXPECT_EQ(s["reference"], std::string(name) == "dpo_lora" ? "adapters_off" : "frozen_copy");
        for (const char* k : {"loss", "rewards/accuracies", "preference_accuracy", "exact_match"})
            EXPECT_TRUE(s["eval"].contains(k)) << k;
        EXPECT_TRUE(s["base_eval"].contains("preference_accuracy"));
    }
}

// At [run] precision = "bf16" too: the reference is precomputed under the same autocast
// as the policy's forward, so the first step still starts at margin 0.
TEST(PreferenceTraining, PrecomputedReferenceGivesTheSameRun) {
    at::set_num_threads(2);
    for (const std::string precision : {"fp32", "bf16"}) {
        SCOPED_TRACE(precision);
        auto dir = temp_dir("dpo-pre-" + precision);
        const fs::path eval = head_of("preference_eval.jsonl", dir);
        const auto with_precision = [&](const fs::path& out) {
            std::string body = base_config(out);
            return body.replace(body.find("[run]\n"), 6, "[run]\nprecision = \"" + precision + "\"\n");
        };
        write_file(dir / "a.toml", with_precision(dir / "run") +
                                       stage("dpo", "plugin = \"dpo\"", "full", "preference_train.jsonl", eval));
        write_file(dir / "b.toml", with_precision(dir / "run_pre") +
                                       stage("dpo", "plugin = \"dpo\"", "full", "preference_train.jsonl", eval,
                                             "precompute_ref_log_probs = true\n"));
        ASSERT_EQ(run(dir / "a.toml"), 0);
        ASSERT_EQ(run(dir / "b.toml"), 0);
        const auto a = lines_of(dir / "run", "dpo"), b = lines_of(dir / "run_pre", "dpo");
        ASSERT_EQ(a.size(), b.size());
        EXPECT_NEAR(b[0]["rewards/margins"].get<double>(), 0.0, 1e-6);
        // The precomputed run did take that path (and freed its frozen copy); the other
        // kept the copy.
        EXPECT_EQ(summary_of(dir / "run_pre", "dpo")["reference"], "precomputed");
        EXPECT_EQ(summary_of(dir / "run", "dpo")["reference"], "frozen_copy");
        // bf16 rounds the two runs' batches differently once the weights move.
        const double tolerance = precision == "fp32" ? 1e-5 : 1e-3;
        for (size_t i = 0; i < a.size(); ++i) {
            EXPECT_NEAR(a[i]["loss"].get<double>(), b[i]["loss"].get<double>(), tolerance) << "step " << i + 1;
            EXPECT_NEAR(a[i]["rewards/margins"].get<double>(), b[i]["rewards/margins"].get<double>(), tolerance);
        }
    }
}

TEST(PreferenceTraining, KtoOrpoSimpoTrainAndReportTrlMetrics) {
    at::set_num_threads(2);
    auto dir = temp_dir("pref");
    const fs::path pe = head_of("preference_eval.jsonl", dir), fe = head_of("feedback_eval.jsonl", dir);
    write_file(dir / "c.toml", base_config(dir / "run") +
                                   stage("kto", "plugin = \"kto\"", "lora", "feedback_train.jsonl", fe) +
                                   stage("orpo", "plugin = \"orpo\"", "lora", "preference_train.jsonl", pe) +
                                   stage("simpo", "plugin = \"simpo\"", "lora", "preference_train.jsonl", pe));
    ASSERT_EQ(run(dir / "c.toml"), 0);
    // KTO at step 1: Δ = 0 and z0 = 0, so every example costs w (1 - σ(0)) = 1/2.
    const auto kto = lines_of(dir / "run", "kto");
    ASSERT_EQ(kto.size(), 3u);
    EXPECT_NEAR(kto[0]["loss"].get<double>(), 0.5, 1e-6);
    for (const char* k : {"kl", "rewards/chosen", "rewards/rejected", "logps/chosen"}) EXPECT_TRUE(kto[0].contains(k)) << k;
    for (const char* k : {"log_odds_ratio", "log_odds_chosen", "nll_loss", "rewards/accuracies"})
        EXPECT_TRUE(lines_of(dir / "run", "orpo")[0].contains(k)) << k;
    for (const char* k : {"rewards/margins", "logps/chosen"}) EXPECT_TRUE(lines_of(dir / "run", "simpo")[0].contains(k)) << k;
    EXPECT_TRUE(summary_of(dir / "run", "kto")["eval"].contains("exact_match"));
    EXPECT_TRUE(summary_of(dir / "run", "orpo")["eval"].contains("log_odds_ratio"));
}

TEST(PreferenceTraining, DistillFromAnIdenticalTeacherStartsAtZero) {
    at::set_num_threads(2);
    auto dir = temp_dir("distill");
    const fs::path eval = head_of("eval.jsonl", dir);
    write_file(dir / "c.toml", base_config(dir / "run") +
                                   stage("student", "plugin = \"distill\"\nbeta = 0.3", "full", "train.jsonl", eval, "",
                                         "init_from = \"base\"\nteacher = \"base\"\n"));
    ASSERT_EQ(run(dir / "c.toml"), 0);
    const auto lines = lines_of(dir / "run", "student");
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_NEAR(lines[0]["divergence"].get<double>(), 0.0, 1e-6);
    EXPECT_NEAR(lines[0]["loss"].get<double>(), 0.0, 1e-6);
    EXPECT_GT(lines[2]["divergence"].get<double>(), 1e-9);
    const auto s = summary_of(dir / "run", "student");
    EXPECT_TRUE(s["teacher_eval"].contains("exact_match"));
    EXPECT_GT(s["tokens_per_s"].get<double>(), 0.0);
}

TEST(PreferenceTraining, DistillRefusesATeacherWithAnotherVocabulary) {
    at::set_num_threads(2);
    auto dir = temp_dir("distill-vocab");
    const fs::path eval = head_of("eval.jsonl", dir);
    std::string cfg = base_config(dir / "run");
    cfg += "[[stage]]\nname = \"wide\"\n[stage.model]\nplugin = \"decoder\"\nvocab_size = 320\nhidden_size = 32\n"
           "intermediate_size = 64\nnum_hidden_layers = 1\nnum_attention_heads = 4\n"
           "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"cpt\"\n"
           "[stage.data]\ntrain = \"" + kData + "corpus.jsonl\"\nmax_seq_len = 64\n[stage.train]\nsteps = 1\nbatch_size = 2\n";
    cfg += stage("student", "plugin = \"distill\"", "full", "train.jsonl", eval, "", "init_from = \"base\"\nteacher = \"wide\"\n");
    write_file(dir / "c.toml", cfg);
    try {
        run(dir / "c.toml");
        ADD_FAILURE() << "expected an error";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("vocab_size 320"), std::string::npos) << e.what();
    }
    const auto summary = nlohmann::json::parse(read_text(dir / "run/summary.json"));
    EXPECT_EQ(summary["status"], "failed");
}

TEST(PreferenceTraining, ConfigErrorsNameTheProblem) {
    auto dir = temp_dir("pref-config");
    const fs::path eval = head_of("preference_eval.jsonl", dir);
    auto errors = [&](const std::string& text) { return config_errors(dir, text); };
    const std::string base = base_config(dir / "run");
    EXPECT_NE(errors(base + stage("d", "plugin = \"distill\"", "full", "train.jsonl", eval)).find("needs a teacher"),
              std::string::npos);
    EXPECT_NE(errors(base + stage("d", "plugin = \"dpo\"", "lora", "preference_train.jsonl", eval, "",
                                  "init_from = \"base\"\nteacher = \"base\"\n"))
                  .find("does not use a teacher"),
              std::string::npos);
    std::string packed = stage("d", "plugin = \"dpo\"", "lora", "preference_train.jsonl", eval);
    packed.replace(packed.find("max_seq_len = 96"), 16, "max_seq_len = 96\npacking = true");
    EXPECT_NE(errors(base + packed).find("set packing = false"), std::string::npos);
    EXPECT_NE(errors(base + stage("d", "plugin = \"orpo\"", "lora", "preference_train.jsonl", eval,
                                  "precompute_ref_log_probs = true\n"))
                  .find("has no reference model"),
              std::string::npos);
    EXPECT_NE(errors(base + stage("d", "plugin = \"dpo\"", "lora", "preference_train.jsonl", eval, "",
                                  "init_from = \"runs/nowhere/final\"\n"))
                  .find("has neither stage.json nor config.json"),
              std::string::npos);
}

// A preference row given to an objective that trains on single sequences, and a
// feedback row without its label, fail at their line.
TEST(PreferenceTraining, WrongRowShapesFailAtTheirLine) {
    at::set_num_threads(2);
    auto dir = temp_dir("pref-rows");
    write_file(dir / "bad.jsonl", "{\"prompt\": \"q\", \"completion\": \" a\", \"label\": true}\n"
                                  "{\"prompt\": \"q\", \"completion\": \" b\"}\n");
    const fs::path eval = head_of("feedback_eval.jsonl", dir);
    std::string cfg = base_config(dir / "run") + stage("k", "plugin = \"kto\"", "lora", "x", eval);
    cfg.replace(cfg.find(kData + "x"), kData.size() + 1, (dir / "bad.jsonl").string());
    write_file(dir / "c.toml", cfg);
    try {
        run(dir / "c.toml");
        ADD_FAILURE() << "expected an error";
    } catch (const std::exception& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("bad.jsonl:2"), std::string::npos) << msg;
        EXPECT_NE(msg.find("'label'"), std::string::npos) << msg;
    }
}

}  // namespace
}  // namespace fthost::test
