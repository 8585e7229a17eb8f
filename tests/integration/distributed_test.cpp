// Data parallel across processes (docs/DISTRIBUTED.md): 2 ranks over Gloo on this machine
// give the losses, metrics and weights of 1 process with twice the accumulation, for
// full fine-tuning, LoRA and DPO + LoRA; launched by `fthost run --nproc-per-node 2` and
// by torchrun. The ranks are real processes of the fthost executable.
#include "integration/run_support.hpp"

#include "io/safetensors.hpp"

#include <sys/wait.h>

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
                          const std::string& init_from = "", const std::string& extra_train = "") {
    std::string s = "[[stage]]\nname = \"" + name + "\"\n";
    if (!init_from.empty()) s += "init_from = \"" + init_from + "\"\n";
    else
        s += "[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n"
             "num_attention_heads = 4\nnum_key_value_heads = 2\n";
    s += "[stage.param]\nplugin = \"" + param + "\"\n" + (param == "lora" ? "r = 4\nlora_alpha = 8.0\nlora_dropout = 0.1\n" : "");
    s += "[stage.objective]\nplugin = \"" + objective + "\"\n";
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
                if (!v.is_number() || k == "tokens_per_s" || k == "comm_s") continue;
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
             {"base", "dpo"}}),
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
// in one process's layout.
TEST(Distributed, ZeroOneShardsTheOptimizerStateAndChangesNothingElse) {
    const fs::path dir = temp_dir("ddp_zero1");
    const std::string stages = decoder_stage("sft", "full", "sft", "train.jsonl", 4, 4, 1, "", "checkpoint_every = 2\n");
    write_file(dir / "plain.toml", run_header(dir / "plain") + stages);
    write_file(dir / "zero.toml", run_header(dir / "zero") + "[run.distributed]\nzero_stage = 1\n" + stages);
    ASSERT_EQ(cli_run(dir / "plain.toml", "--nproc-per-node 2", dir / "plain.log"), 0) << read_text(dir / "plain.log");
    ASSERT_EQ(cli_run(dir / "zero.toml", "--nproc-per-node 2", dir / "zero.log"), 0) << read_text(dir / "zero.log");
    expect_same_run(dir / "plain", dir / "zero", {"sft"}, 0.0);
    const std::string ckpt = "stages/sft/checkpoints/step-2/optimizer.safetensors";
    const auto a = load_safetensors((dir / "plain" / ckpt).string()), b = load_safetensors((dir / "zero" / ckpt).string());
    ASSERT_EQ(a.size(), b.size());
    ASSERT_GT(a.size(), 3u);
    for (const auto& [name, t] : a) {
        ASSERT_TRUE(b.count(name)) << name;
        EXPECT_TRUE(at::equal(t, b.at(name))) << name;
    }
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
