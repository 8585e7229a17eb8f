// On-policy stages end to end on a tiny decoder: grpo (and its alias rft) sample,
// grade, and train; rewards, completion and clip/KL metrics reach metrics.jsonl; a
// generation batch reused for several steps (stored old log-probs) and full fine-tuning
// with a KL term (frozen reference copy) both run; config mistakes are caught early.
#include "integration/run_support.hpp"
#include "io/atomic_file.hpp"

#include <ATen/Parallel.h>

namespace fthost::test {
namespace {

const std::string& kData = quickstart_data();

std::string base(const fs::path& out) { return tiny_base_config(out, 9, "sft", "train.jsonl", false); }

std::string rl_stage(const std::string& name, const std::string& objective, const std::string& param,
                     const std::string& generation, const std::string& train = "") {
    return "[[stage]]\nname = \"" + name + "\"\ninit_from = \"base\"\n[stage.param]\nplugin = \"" + param + "\"\n" +
           (param == "lora" ? "r = 4\ntarget_modules = [\"all-linear\"]\n" : "") + "[stage.objective]\n" + objective +
           "\n[stage.generation]\nnum_generations = 4\nmax_new_tokens = 4\n" + generation +
           "[stage.data]\ntrain = \"" + kData + "train.jsonl\"\neval = \"" + kData + "eval.jsonl\"\nmax_seq_len = 96\n"
           "[stage.train]\nsteps = 3\nbatch_size = 8\nlr = 1e-3\nlog_every = 1\n" + train +
           "[stage.eval]\nmax_examples = 8\nmax_new_tokens = 4\n[[stage.grader]]\nplugin = \"exact_match\"\nweight = 2.0\n";
}

TEST(GrpoTraining, SamplesGradesAndTrains) {
    at::set_num_threads(2);
    auto dir = temp_dir("grpo");
    write_file(dir / "c.toml", base(dir / "run") +
                                   rl_stage("grpo", "plugin = \"grpo\"\nbeta = 0.04\nloss_type = \"grpo\"", "lora", "") +
                                   rl_stage("iter", "plugin = \"rft\"\nbeta = 0.1", "full", "num_iterations = 2\n") +
                                   rl_stage("gspo", "plugin = \"grpo\"\nimportance_sampling_level = \"sequence\"", "lora",
                                            "mask_truncated_completions = true\ntemperature = 0.8\ntop_p = 0.9\n"));
    ASSERT_EQ(run(dir / "c.toml"), 0);
    for (const char* name : {"grpo", "iter", "gspo"}) {
        SCOPED_TRACE(name);
        const auto lines = lines_of(dir / "run", name);
        ASSERT_EQ(lines.size(), 3u);
        for (const char* k : {"reward", "reward_std", "rewards/exact_match/mean", "rewards/exact_match/std",
                              "completions/mean_length", "completions/clipped_ratio", "frac_reward_zero_std",
                              "generation/tokens_per_s", "clip_ratio/region_mean", "advantages/std"})
            EXPECT_TRUE(lines[0].contains(k)) << k;
        // Rewards are the grader's score times its weight (2), so within [0, 2].
        EXPECT_GE(lines[0]["reward"].get<double>(), 0.0);
        EXPECT_LE(lines[0]["reward"].get<double>(), 2.0);
        EXPECT_LE(lines[0]["completions/mean_length"].get<double>(), 4.0);
        // A fresh generation batch is on-policy: the ratio is 1 and nothing is clipped.
        EXPECT_DOUBLE_EQ(lines[0]["clip_ratio/region_mean"].get<double>(), 0.0);
        const auto summary = nlohmann::json::parse(read_text(dir / "run/summary.json"));
        for (const auto& s : summary["stages"])
            if (s["name"] == name) {
                EXPECT_TRUE(s["eval"].contains("exact_match"));
                EXPECT_TRUE(s["eval"].contains("sampled/exact_match"));
                EXPECT_TRUE(s["base_eval"].contains("sampled/exact_match"));
            }
    }
    EXPECT_TRUE(lines_of(dir / "run", "grpo")[0].contains("kl"));
    EXPECT_NEAR(lines_of(dir / "run", "grpo")[0]["kl"].get<double>(), 0.0, 1e-6);  // policy == reference at step 1
}

TEST(GrpoTraining, ConfigMistakesAreCaught) {
    auto dir = temp_dir("grpo-config");
    auto errors = [&](const std::string& text) { return config_errors(dir, text); };
    const std::string b = base(dir / "run");
    std::string no_grader = rl_stage("g", "plugin = \"grpo\"", "lora", "");
    no_grader.erase(no_grader.find("[[stage.grader]]"));
    EXPECT_NE(errors(b + no_grader).find("needs at least one [[stage.grader]]"), std::string::npos);
    std::string three = rl_stage("g", "plugin = \"grpo\"", "lora", "");
    three.replace(three.find("num_generations = 4"), 19, "num_generations = 3");
    EXPECT_NE(errors(b + three).find("multiple of"), std::string::npos);
    EXPECT_NE(errors(b + rl_stage("g", "plugin = \"grpo\"", "lora", "", "precompute_ref_log_probs = true\n"))
                  .find("cannot be precomputed"),
              std::string::npos);
    EXPECT_NE(errors(b + rl_stage("g", "plugin = \"sft\"", "lora", "")).find("[stage.generation] is for objectives"),
              std::string::npos);
    EXPECT_NE(errors(b + rl_stage("g", "plugin = \"grpo\"\nloss_type = \"ppo\"", "lora", "")).find("dapo, grpo, bnpo"),
              std::string::npos);
}

}  // namespace
}  // namespace fthost::test
