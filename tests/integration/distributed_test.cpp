// Data parallel across processes (docs/DISTRIBUTED.md): 2 ranks over Gloo on this machine
// give the losses, metrics and weights of 1 process with twice the accumulation, for
// full fine-tuning, LoRA, LoRA on a mixture of experts, DPO + LoRA and GRPO + LoRA; launched by `fthost run --nproc-per-node 2` and
// by torchrun. The ranks are real processes of the fthost executable.
#include "integration/run_support.hpp"

#include "io/safetensors.hpp"

#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>

namespace fthost::test {
namespace {

// `fthost run CFG EXTRA`, its output in LOG; the exit status.
int cli_run(const fs::path& cfg, const std::string& extra, const fs::path& log, const std::string& prefix = "") {
    const std::string cmd = prefix + (prefix.empty() ? "" : " ") + "'" + cli_path() + "' run '" + cfg.string() + "' " + extra +
                            " > '" + log.string() + "' 2>&1";
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string decoder_stage(const std::string& name, const std::string& param, const std::string& objective,
                          const std::string& data, int64_t steps, int64_t batch, int64_t accum,
                          const std::string& init_from = "", const std::string& extra_train = "",
                          const std::string& extra_objective = "") {
    std::string s = "[[stage]]\nname = \"" + name + "\"\n";
    if (!init_from.empty()) s += "init_from = \"" + init_from + "\"\n";
    else
        s += "[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n"
             "num_attention_heads = 4\nnum_key_value_heads = 2\n";
    s += "[stage.param]\nplugin = \"" + param + "\"\n" + (param == "lora" ? "r = 4\nlora_alpha = 8.0\nlora_dropout = 0.1\n" : "");
    s += "[stage.objective]\nplugin = \"" + objective + "\"\n" + extra_objective;
    s += "[stage.data]\ntrain = \"" + quickstart_data() + data + "\"\neval_fraction = 0.05\nmax_seq_len = 128\n";
    s += "[stage.train]\nsteps = " + std::to_string(steps) + "\nbatch_size = " + std::to_string(batch) +
         "\ngrad_accum = " + std::to_string(accum) + "\nlr = 3e-3\nlog_every = 1\nwarmup_steps = 1\n" + extra_train;
    s += "[stage.eval]\nmax_examples = 4\nmax_new_tokens = 4\n";
    return s;
}

std::string run_header(const fs::path& out) {
    // One thread per process: intra-op parallelism would sum in another order.
    return "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 11\nthreads = 1\n";
}

struct Case {
    std::string name;
    std::function<std::string(int64_t accum)> stages;
    std::vector<std::string> stage_names;
};

// Every number of two runs' training lines, summaries' evals and final/ tensors agree.
void expect_same_run(const fs::path& one, const fs::path& two, const std::vector<std::string>& stages, double tol) {
    for (const auto& stage : stages) {
        SCOPED_TRACE(stage);
        const auto a = lines_of(one, stage), b = lines_of(two, stage);
        ASSERT_EQ(a.size(), b.size());
        ASSERT_FALSE(a.empty());
        for (size_t i = 0; i < a.size(); ++i)
            for (const auto& [k, v] : a[i].items()) {
                // Timings differ from run to run.
                if (!v.is_number() || k == "tokens_per_s" || k == "comm_s" || k.rfind("generation/", 0) == 0) continue;
                ASSERT_TRUE(b[i].contains(k)) << k;
                const double x = v.get<double>(), y = b[i][k].get<double>();
                EXPECT_NEAR(x, y, tol * std::max(1.0, std::abs(x))) << "step " << i + 1 << " " << k;
            }
        const auto sa = summary_of(one, stage), sb = summary_of(two, stage);
        EXPECT_EQ(sa["tokens"], sb["tokens"]);
        for (const auto& [k, v] : sa["eval"].items())
            if (v.is_number()) EXPECT_NEAR(v.get<double>(), sb["eval"][k].get<double>(), tol * std::max(1.0, std::abs(v.get<double>()))) << k;
        for (const auto& e : fs::directory_iterator(one / "stages" / stage / "final")) {
            if (e.path().extension() != ".safetensors") continue;
            const auto ta = load_safetensors(e.path().string());
            const auto tb = load_safetensors((two / "stages" / stage / "final" / e.path().filename()).string());
            ASSERT_EQ(ta.size(), tb.size());
            double worst = 0;
            for (const auto& [name, t] : ta) worst = std::max(worst, (t.to(at::kDouble) - tb.at(name).to(at::kDouble)).abs().max().item<double>());
            EXPECT_LE(worst, tol) << e.path().filename();
        }
    }
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class TwoRanks : public ::testing::TestWithParam<Case> {};

TEST_P(TwoRanks, EqualOneProcessWithTwiceTheAccumulation) {
    const Case& c = GetParam();
    const fs::path dir = temp_dir("ddp_" + c.name);
    write_file(dir / "one.toml", run_header(dir / "one") + c.stages(2));
    write_file(dir / "two.toml", run_header(dir / "two") + c.stages(1));
    ASSERT_EQ(cli_run(dir / "one.toml", "", dir / "one.log"), 0) << read_text(dir / "one.log");
    ASSERT_EQ(cli_run(dir / "two.toml", "--nproc-per-node 2", dir / "two.log"), 0) << read_text(dir / "two.log");
    expect_same_run(dir / "one", dir / "two", c.stage_names, 1e-6);
    if (c.name == "grpo_lora") {  // equal losses prove little if every reward were the same
        bool varied = false;
        for (const auto& line : lines_of(dir / "two", "grpo")) varied = varied || line["reward_std"].get<double>() > 0;
        EXPECT_TRUE(varied) << "no step had rewards that differ: the policy gradient was zero throughout";
    }
    if (c.name == "moe_lora")  // the routers' loss is in every step, on both ranks' tokens
        for (const auto& line : lines_of(dir / "two", "sft")) EXPECT_GT(line.value("auxiliary_loss", 0.0), 0.0) << line.dump();
    // One writer: no line twice, and the manifest says how the run was spread.
    EXPECT_EQ(metrics(dir / "one").size(), metrics(dir / "two").size());
    const auto manifest = nlohmann::json::parse(read_text(dir / "two" / "manifest.json"));
    EXPECT_EQ(manifest["distributed"]["world_size"], 2);
    EXPECT_EQ(manifest["distributed"]["backend"], "gloo");
    EXPECT_NE(read_text(dir / "two.log").find("on 2 ranks (gloo)"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Distributed, TwoRanks,
    ::testing::Values(
        Case{"sft_full", [](int64_t a) { return decoder_stage("sft", "full", "sft", "train.jsonl", 4, 4, a); }, {"sft"}},
        Case{"sft_lora", [](int64_t a) { return decoder_stage("sft", "lora", "sft", "train.jsonl", 4, 4, a); }, {"sft"}},
        Case{"dpo_lora",
             [](int64_t a) {
                 return decoder_stage("base", "full", "sft", "train.jsonl", 2, 4, a) +
                        decoder_stage("dpo", "lora", "dpo", "preference_train.jsonl", 3, 2, a, "base");
             },
             {"base", "dpo"}},
        // A mixture of experts (the Mixtral fixture, LoRA on attention and on every
        // expert): each rank routes its own tokens, an expert a rank's tokens never reach
        // reduces as zeros, and the routers' load-balancing loss is weighted per micro-batch.
        Case{"moe_lora",
             [](int64_t a) {
                 std::string s = decoder_stage("sft", "lora", "sft", "train.jsonl", 3, 4, a,
                                               std::string(source_dir()) + "/tests/fixtures/hf/chat_mixtral");
                 const std::string dropout = "lora_dropout = 0.1\n";
                 return s.replace(s.find(dropout), dropout.size(), dropout + "target_modules = [\"all-linear\"]\n");
             },
             {"sft"}},
        // Each rank samples and grades its prompt's group; the rewards are the whole
        // batch's on both ranks. A lower-case letter rewards some samples of the barely trained
        // base and not others, so advantages and the policy gradient are not zero.
        Case{"grpo_lora",
             [](int64_t a) {
                 return decoder_stage("base", "full", "sft", "train.jsonl", 2, 4, a) +
                        decoder_stage("grpo", "lora", "grpo", "train.jsonl", 3, 4, a, "base", "", "beta = 0.04\n") +
                        "[stage.generation]\nnum_generations = 4\nmax_new_tokens = 6\ntemperature = 1.0\n"
                        "[[stage.grader]]\nplugin = \"string_check\"\noperation = \"regex\"\npattern = \"[a-z]\"\n";
             },
             {"base", "grpo"}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// torchrun starts the same ranks (its agent hosts the store): the same run, bit for bit
// the --nproc-per-node one.
TEST(Distributed, TorchrunLaunchesTheSameRanks) {
    if (std::string(torchrun_path()).empty()) GTEST_SKIP() << "no torchrun next to the LibTorch this build uses";
    const fs::path dir = temp_dir("ddp_torchrun");
    const std::string stages = decoder_stage("sft", "lora", "sft", "train.jsonl", 3, 4, 1);
    write_file(dir / "a.toml", run_header(dir / "a") + stages);
    write_file(dir / "b.toml", run_header(dir / "b") + stages);
    ASSERT_EQ(cli_run(dir / "a.toml", "--nproc-per-node 2", dir / "a.log"), 0) << read_text(dir / "a.log");
    ASSERT_EQ(cli_run(dir / "b.toml", "", dir / "b.log",
                      "OMP_NUM_THREADS=1 '" + std::string(torchrun_path()) + "' --standalone --nproc-per-node 2 --no-python"),
              0)
        << read_text(dir / "b.log");
    expect_same_run(dir / "a", dir / "b", {"sft"}, 0.0);
    EXPECT_EQ(nlohmann::json::parse(read_text(dir / "b" / "manifest.json"))["distributed"]["launcher"], "torchrun");
}

// ZeRO-1 keeps each AdamW moment on one rank: the update is plain data parallelism's,
// element for element (the same run bit for bit), and a checkpoint holds the whole state
// in one process's layout — with full's bf16 weights too, whose float32 masters are
// sharded with the moments.
class ZeroOne : public ::testing::TestWithParam<std::string> {};

TEST_P(ZeroOne, ShardsTheOptimizerStateAndChangesNothingElse) {
    const fs::path dir = temp_dir("ddp_zero1_" + GetParam());
    std::string stages = decoder_stage("sft", "full", "sft", "train.jsonl", 4, 4, 1, "", "checkpoint_every = 2\n");
    const std::string full = "plugin = \"full\"\n";
    stages.replace(stages.find(full), full.size(), full + "weight_dtype = \"" + GetParam() + "\"\n");
    write_file(dir / "plain.toml", run_header(dir / "plain") + stages);
    write_file(dir / "zero.toml", run_header(dir / "zero") + "[run.distributed]\nzero_stage = 1\n" + stages);
    ASSERT_EQ(cli_run(dir / "plain.toml", "--nproc-per-node 2", dir / "plain.log"), 0) << read_text(dir / "plain.log");
    ASSERT_EQ(cli_run(dir / "zero.toml", "--nproc-per-node 2", dir / "zero.log"), 0) << read_text(dir / "zero.log");
    expect_same_run(dir / "plain", dir / "zero", {"sft"}, 0.0);
    const std::string ckpt = "stages/sft/checkpoints/step-2/optimizer.safetensors";
    const auto a = load_safetensors((dir / "plain" / ckpt).string()), b = load_safetensors((dir / "zero" / ckpt).string());
    ASSERT_EQ(a.size(), b.size());
    ASSERT_GT(a.size(), 3u);
    size_t masters = 0;
    for (const auto& [name, t] : a) {
        ASSERT_TRUE(b.count(name)) << name;
        EXPECT_TRUE(at::equal(t, b.at(name))) << name;
        if (name.rfind("master.", 0) != 0) continue;
        ++masters;
        EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
    }
    EXPECT_EQ(masters > 0, GetParam() == "bfloat16");
}

INSTANTIATE_TEST_SUITE_P(Distributed, ZeroOne, ::testing::Values("float32", "bfloat16"));

// A grader that fails on one rank's prompts and not on the other's: that rank's groups
// are lost (on_error = "skip"; a failed call loses what it graded, and each rank grades
// its own share), the rank left with no row still takes part in the step's gradient sum,
// the other's group trains, and the counts are the whole batch's.
TEST(Distributed, AGroupLostOnOneRankLeavesTheOtherRankTraining) {
    const fs::path dir = temp_dir("ddp_lost");
    const fs::path grader = dir / "half.sh";
    write_file(grader, "#!/bin/sh\n"
                       "in=$(cat)\n"
                       "if printf '%s' \"$in\" | grep -Eq '\"reference\": *\" (meat|produce|pantry|household|snacks)\"'; then\n"
                       "  exit 3\nfi\n"
                       "n=$(printf '%s' \"$in\" | grep -o '\"reference\":' | wc -l)\n"
                       "printf '['; i=0; while [ $i -lt $n ]; do [ $i -gt 0 ] && printf ','; printf 1; i=$((i+1)); done\n"
                       "echo ']'\n");
    ::chmod(grader.c_str(), 0755);
    write_file(dir / "two.toml",
               run_header(dir / "two") + decoder_stage("base", "full", "sft", "train.jsonl", 2, 4, 1) +
                   decoder_stage("grpo", "lora", "grpo", "train.jsonl", 6, 4, 1, "base") +
                   "[stage.generation]\nnum_generations = 4\nmax_new_tokens = 6\ntemperature = 1.0\n"
                   "[[stage.grader]]\nplugin = \"string_check\"\noperation = \"regex\"\npattern = \"[a-z]\"\n"
                   "[[stage.grader]]\nplugin = \"program\"\ncommand = [\"" + grader.string() + "\"]\n"
                   "write_paths = [\"" + dir.string() + "\"]\non_error = \"skip\"\nmax_failure_fraction = 1.0\n");
    ASSERT_EQ(cli_run(dir / "two.toml", "--nproc-per-node 2", dir / "two.log", "timeout 300"), 0) << read_text(dir / "two.log");
    const auto lines = lines_of(dir / "two", "grpo");
    ASSERT_EQ(lines.size(), 6u);
    double dropped = 0;
    // Steps where one rank's group was lost and the other's trained, with a gradient
    // (rewards that differ within the kept group).
    int split = 0, split_with_gradient = 0;
    for (const auto& line : lines) {
        dropped += line["rewards/dropped"].get<double>();
        if (line["rewards/dropped"].get<double>() != 4) continue;
        ++split;
        EXPECT_TRUE(std::isfinite(line["loss"].get<double>())) << line.dump();
        split_with_gradient += line["grad_norm"].get<double>() > 0;
    }
    EXPECT_GT(split, 0) << "the seeded order never split a lost and a kept prompt across the ranks";
    EXPECT_GT(split_with_gradient, 0) << "no split step's kept group had rewards that differ";
    const auto failures = summary_of(dir / "two", "grpo")["grader_failures"]["program"];
    EXPECT_EQ(failures["graded"].get<int64_t>(), 6 * 8);  // both ranks' completions, every step
    EXPECT_EQ(failures["lost"].get<double>(), dropped);
    EXPECT_NE(failures["last_error"].get<std::string>().find("status 3"), std::string::npos) << failures.dump();
    EXPECT_TRUE(fs::exists(dir / "two/stages/grpo/final/adapter_config.json"));
}

TEST(Distributed, LauncherRefusesToNest) {
    const fs::path dir = temp_dir("ddp_nested");
    write_file(dir / "c.toml", run_header(dir / "out") + decoder_stage("sft", "full", "sft", "train.jsonl", 1, 4, 1));
    EXPECT_EQ(cli_run(dir / "c.toml", "--nproc-per-node 2", dir / "log", "RANK=0 WORLD_SIZE=1"), 1);
    EXPECT_NE(read_text(dir / "log").find("drop --nproc-per-node"), std::string::npos) << read_text(dir / "log");
    EXPECT_FALSE(fs::exists(dir / "out"));
}

}  // namespace
}  // namespace fthost::test
