// Failures are recorded as failures, and what they cost is the configured policy's:
// a grader that fails loses its rewards (on_error = "skip": the group is not trained
// on) or zeroes them ("zero") or stops the stage ("fail"), is counted per grader in
// metrics.jsonl and summary.json, and a stage that loses too many rewards stops; a step
// whose loss or gradient is NaN/Inf stops the stage naming it, or is skipped and counted
// (on_nonfinite = "skip") without touching the weights.
#include "integration/run_support.hpp"
#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"

#include <sys/stat.h>

#include <cmath>

namespace fthost::test {
namespace {

const std::string& kData = quickstart_data();

// A program grader that fails (exit 3) on the calls listed in FAIL_CALLS (1-based, as
// " 2 4 "), scores every item 1 otherwise; it counts its calls in the file STATE.
fs::path flaky_grader(const fs::path& dir) {
    const fs::path p = dir / "flaky.sh";
    write_file(p, "#!/bin/sh\n"
                  "n=$(grep -o '\"reference\":' | wc -l)\n"
                  "c=$(( $(cat \"$STATE\" 2>/dev/null || echo 0) + 1 ))\necho $c > \"$STATE\"\n"
                  "case \"$FAIL_CALLS\" in *\" $c \"*) echo 'grader broke' >&2; exit 3;; esac\n"
                  "printf '['; i=0; while [ $i -lt $n ]; do [ $i -gt 0 ] && printf ','; printf 1; i=$((i+1)); done\n"
                  "echo ']'\n");
    ::chmod(p.c_str(), 0755);
    return p;
}

// The tiny base stage, then a GRPO stage (3 steps of 2 prompts x 4 completions, no base
// eval, 8 eval prompts) graded by the flaky program with `grader_keys` added.
std::string grpo_config(const fs::path& dir, const std::string& fail_calls, const std::string& grader_keys) {
    return tiny_base_config(dir / "run", 11, "sft", "train.jsonl", false) +
           "[[stage]]\nname = \"rl\"\ninit_from = \"base\"\n[stage.param]\nplugin = \"lora\"\nr = 4\n"
           "[stage.objective]\nplugin = \"grpo\"\n[stage.generation]\nnum_generations = 4\nmax_new_tokens = 4\n"
           "[stage.data]\ntrain = \"" + kData + "train.jsonl\"\neval = \"" + kData + "eval.jsonl\"\nmax_seq_len = 96\n"
           "[stage.train]\nsteps = 3\nbatch_size = 8\nlr = 1e-3\nlog_every = 1\n"
           "[stage.eval]\nbase = false\nmax_examples = 8\nmax_new_tokens = 4\n"
           "[[stage.grader]]\nplugin = \"program\"\ncommand = [\"" + flaky_grader(dir).string() + "\"]\n"
           "env = [\"STATE=" + (dir / "calls").string() + "\", \"FAIL_CALLS= " + fail_calls + " \"]\n" +
           "write_paths = [\"" + dir.string() + "\"]\n" + grader_keys;
}

nlohmann::json stage_summary(const fs::path& run, const std::string& name) {
    const auto summary = nlohmann::json::parse(read_text(run / "summary.json"));
    for (const auto& s : summary["stages"])
        if (s["name"] == name) return s;
    return {};
}

// The run's error message, or "" when it succeeded.
std::string run_error(const fs::path& cfg) {
    try {
        EXPECT_EQ(run(cfg), 0);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

// Calls: step 1, step 2 (fails), step 3, the final greedy eval (fails), the sampled eval.
TEST(FailurePolicy, ASkippedGraderFailureLosesItsGroupsAndIsCounted) {
    auto dir = temp_dir("fail-skip");
    write_file(dir / "c.toml", grpo_config(dir, "2 4", "max_failure_fraction = 0.5\n"));
    ASSERT_EQ(run_error(dir / "c.toml"), "");
    const auto lines = lines_of(dir / "run", "rl");
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0]["rewards/program/failed"], 0);
    EXPECT_EQ(lines[0]["rewards/program/mean"], 1.0);
    // Step 2: the grader failed on all 8 completions, so both groups are left out and
    // the step makes no update; its mean reward is unknown, not 0.
    EXPECT_EQ(lines[1]["rewards/program/failed"], 8);
    EXPECT_EQ(lines[1]["rewards/dropped"], 8);
    EXPECT_TRUE(lines[1]["rewards/program/mean"].is_null()) << lines[1].dump();
    EXPECT_EQ(lines[1]["no_reward_steps"], 1);
    EXPECT_EQ(lines[2]["rewards/program/failed"], 0);
    const auto s = stage_summary(dir / "run", "rl");
    EXPECT_EQ(s["status"], "completed");
    EXPECT_EQ(s["no_reward_steps"], 1);
    const auto& f = s["grader_failures"]["program"];
    EXPECT_EQ(f["graded"], 24);
    EXPECT_EQ(f["lost"], 8);
    EXPECT_EQ(f["failed_calls"], 1);
    EXPECT_NE(f["last_error"].get<std::string>().find("exited with status 3"), std::string::npos) << f.dump();
    // The final greedy eval failed: no score, and the failure counted; the sampled eval did not.
    EXPECT_TRUE(s["eval"]["program"].is_null()) << s["eval"].dump();
    EXPECT_EQ(s["eval"]["program/failed"], 8);
    EXPECT_EQ(s["eval"]["sampled/program"], 1.0);
    EXPECT_FALSE(s["eval"].contains("sampled/program/failed"));
}

TEST(FailurePolicy, AZeroedGraderFailureTrainsOnZerosAndIsCounted) {
    auto dir = temp_dir("fail-zero");
    write_file(dir / "c.toml", grpo_config(dir, "2", "on_error = \"zero\"\nmax_failure_fraction = 0.5\n"));
    ASSERT_EQ(run_error(dir / "c.toml"), "");
    const auto lines = lines_of(dir / "run", "rl");
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[1]["rewards/program/failed"], 8);
    EXPECT_EQ(lines[1]["rewards/dropped"], 0);
    EXPECT_EQ(lines[1]["rewards/program/mean"], 0.0);
    EXPECT_FALSE(lines[1].contains("no_reward_steps"));
    EXPECT_EQ(stage_summary(dir / "run", "rl")["grader_failures"]["program"]["lost"], 8);
}

TEST(FailurePolicy, AStageThatLosesTooManyRewardsStops) {
    auto dir = temp_dir("fail-too-many");
    write_file(dir / "c.toml", grpo_config(dir, "1", ""));  // the default share, 0.1
    const std::string what = run_error(dir / "c.toml");
    EXPECT_NE(what.find("grader 'program' has lost 8 of 8 rewards (100.0%), more than its max_failure_fraction = 0.1"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("exited with status 3"), std::string::npos) << what;
    const auto summary = nlohmann::json::parse(read_text(dir / "run/summary.json"));
    EXPECT_EQ(summary["status"], "failed");
    EXPECT_EQ(stage_summary(dir / "run", "rl")["status"], "failed");
}

TEST(FailurePolicy, OnErrorFailStopsAtTheFirstFailure) {
    auto dir = temp_dir("fail-fail");
    write_file(dir / "c.toml", grpo_config(dir, "1", "on_error = \"fail\"\n"));
    const std::string what = run_error(dir / "c.toml");
    EXPECT_NE(what.find("grader 'program' failed (on_error = \"fail\"): program exited with status 3"), std::string::npos)
        << what;
}

TEST(FailurePolicy, PolicyKeysAreValidated) {
    auto dir = temp_dir("fail-keys");
    const std::string errors = config_errors(dir, grpo_config(dir, "", "on_error = \"retry\"\nmax_failure_fraction = 1.5\n"));
    EXPECT_NE(errors.find("on_error must be \"skip\", \"zero\" or \"fail\""), std::string::npos) << errors;
    EXPECT_NE(errors.find("max_failure_fraction must be a number in [0, 1]"), std::string::npos) << errors;
    EXPECT_NE(errors.find("c.toml:"), std::string::npos) << errors;
    const std::string train = config_errors(
        dir, tiny_base_config(dir / "run", 1, "sft", "train.jsonl", false) + "on_nonfinite = \"ignore\"\n");
    EXPECT_NE(train.find("on_nonfinite must be \"stop\" or \"skip\", not \"ignore\""), std::string::npos) << train;
}

// A learning rate no model survives: after step 1 the weights are ~1e30 and every later
// loss overflows.
std::string diverging(const fs::path& out, int64_t steps, const std::string& extra) {
    std::string cfg = tiny_base_config(out, 5, "sft", "train.jsonl", false);
    const std::string from = "steps = 3\nbatch_size = 8\nlr = 3e-3\n";
    cfg.replace(cfg.find(from), from.size(),
                "steps = " + std::to_string(steps) + "\nbatch_size = 8\nlr = 1e30\nmax_grad_norm = 0.0\nlog_every = 1\n" + extra);
    return cfg;
}

TEST(FailurePolicy, ANonFiniteLossStopsNamingTheStepAndMicroBatch) {
    auto dir = temp_dir("nonfinite-stop");
    write_file(dir / "c.toml", diverging(dir / "run", 4, "grad_accum = 2\n"));
    const std::string what = run_error(dir / "c.toml");
    EXPECT_NE(what.find("stage 'base' step 2: the loss is "), std::string::npos) << what;
    EXPECT_NE(what.find("in micro-batch 1 of 2"), std::string::npos) << what;
    EXPECT_NE(what.find("on_nonfinite = \"skip\""), std::string::npos) << what;
    EXPECT_EQ(nlohmann::json::parse(read_text(dir / "run/summary.json"))["status"], "failed");
}

TEST(FailurePolicy, SkippedNonFiniteStepsLeaveTheWeightsAlone) {
    auto dir = temp_dir("nonfinite-skip");
    write_file(dir / "one.toml", diverging(dir / "one", 1, ""));
    ASSERT_EQ(run_error(dir / "one.toml"), "");
    write_file(dir / "c.toml", diverging(dir / "run", 4, "on_nonfinite = \"skip\"\n"));
    ASSERT_EQ(run_error(dir / "c.toml"), "");
    const auto s = stage_summary(dir / "run", "base");
    EXPECT_EQ(s["status"], "completed");
    EXPECT_EQ(s["nonfinite_skips"], 3);
    const auto lines = lines_of(dir / "run", "base");
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_FALSE(lines[0].contains("nonfinite_skips"));
    EXPECT_EQ(lines[3]["nonfinite_skips"], 3);
    EXPECT_TRUE(lines[3]["loss"].is_null());  // no step of the window updated
    // Steps 2-4 changed nothing: the weights are step 1's, as a 1-step run leaves them.
    const auto a = host::load_safetensors((dir / "one/stages/base/final/model.safetensors").string());
    const auto b = host::load_safetensors((dir / "run/stages/base/final/model.safetensors").string());
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a) {
        ASSERT_TRUE(b.count(name)) << name;
        EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << name;
        EXPECT_TRUE(at::equal(t, b.at(name))) << name;
    }
    write_file(dir / "few.toml", diverging(dir / "few", 4, "on_nonfinite = \"skip\"\nmax_nonfinite_skips = 1\n"));
    const std::string what = run_error(dir / "few.toml");
    EXPECT_NE(what.find("stage 'base' step 3: 2 steps had a non-finite loss or gradient norm, more than [stage.train] "
                        "max_nonfinite_skips = 1"),
              std::string::npos)
        << what;
}

}  // namespace
}  // namespace fthost::test
