// Which rank a process is, from the variables torchrun and srun set (distributed/world.*),
// and [run.distributed] as the config loader checks it.
#include "test_support.hpp"
#include "integration/run_support.hpp"

#include "distributed/world.hpp"

#include <map>

namespace fthost::test {
namespace {

World world_of(const std::map<std::string, std::string>& env) {
    return world_from_environment([&](const char* name) -> std::optional<std::string> {
        auto it = env.find(name);
        return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
    });
}

std::string error_of(const std::map<std::string, std::string>& env) {
    try {
        world_of(env);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(World, NoLauncherIsOneProcess) {
    const World w = world_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}});  // an sbatch script, not srun
    EXPECT_EQ(w.size, 1);
    EXPECT_EQ(w.rank, 0);
    EXPECT_FALSE(w.distributed());
    EXPECT_EQ(w.launcher, "none");
}

TEST(World, TorchrunVariables) {
    const World w = world_of({{"RANK", "5"}, {"LOCAL_RANK", "1"}, {"WORLD_SIZE", "8"}, {"LOCAL_WORLD_SIZE", "4"},
                              {"MASTER_ADDR", "node01"}, {"MASTER_PORT", "29400"},
                              {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
    EXPECT_EQ(w.launcher, "torchrun");
    EXPECT_EQ(w.rank, 5);
    EXPECT_EQ(w.local_rank, 1);
    EXPECT_EQ(w.size, 8);
    EXPECT_EQ(w.local_size, 4);
    EXPECT_EQ(w.master_addr, "node01");
    EXPECT_EQ(w.master_port, 29400);
    EXPECT_TRUE(w.agent_store);
    EXPECT_EQ(w.restart_count, 2);
}

// One rank under torchrun still knows the store (a named backend makes a group of one).
TEST(World, OneTorchrunRankKeepsTheStoreAddress) {
    const World w = world_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29511"}});
    EXPECT_FALSE(w.distributed());
    EXPECT_EQ(w.launcher, "torchrun");
    EXPECT_EQ(w.master_addr, "127.0.0.1");
    EXPECT_EQ(w.master_port, 29511);
}

TEST(World, SrunVariables) {
    const World w = world_of({{"SLURM_PROCID", "3"}, {"SLURM_LOCALID", "1"}, {"SLURM_STEP_NUM_TASKS", "4"},
                              {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"}, {"SLURM_STEP_NODELIST", "gpu[07-08]"}});
    EXPECT_EQ(w.launcher, "slurm");
    EXPECT_EQ(w.rank, 3);
    EXPECT_EQ(w.local_rank, 1);
    EXPECT_EQ(w.size, 4);
    EXPECT_EQ(w.local_size, 2);
    EXPECT_EQ(w.master_addr, "gpu07");
    EXPECT_EQ(w.master_port, 29500);
    EXPECT_FALSE(w.agent_store);
}

TEST(World, FirstSlurmHost) {
    EXPECT_EQ(first_slurm_host("node1"), "node1");
    EXPECT_EQ(first_slurm_host("a,b[1-3]"), "a");
    EXPECT_EQ(first_slurm_host("gpu[03-05,9],cpu1"), "gpu03");
    EXPECT_EQ(first_slurm_host("gpu[9,3]"), "gpu9");
    EXPECT_NE(error_of({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_LOCALID", "0"},
                        {"SLURM_STEP_NODELIST", "gpu[07"}})
                  .find("node list"),
              std::string::npos);
}

TEST(World, BadValuesNameTheVariable) {
    EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "x"}, {"MASTER_PORT", "1"}}).find("RANK='2'"),
              std::string::npos);
    EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "two"}}).find("WORLD_SIZE='two'"), std::string::npos);
    EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).find("MASTER_ADDR"), std::string::npos);
    EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}})
                  .find("MASTER_PORT='70000'"),
              std::string::npos);
    EXPECT_NE(error_of({{"RANK", "0"}}).find("WORLD_SIZE is not set"), std::string::npos);
}

TEST(World, DistributedSectionIsValidated) {
    const fs::path dir = temp_dir("world_config");
    const std::string base = tiny_base_config(dir / "out", 0, "sft", "train.jsonl", false);
    EXPECT_EQ(config_errors(dir, base + "[run.distributed]\nbackend = \"gloo\"\ntimeout_s = 30.0\n"), "");
    const std::string bad = config_errors(dir, base + "[run.distributed]\nbackend = \"mpi\"\ntimeout_s = -1.0\nbucket_mb = 0.0\n"
                                                      "ranks = 2\n");
    EXPECT_NE(bad.find("backend must be auto, nccl or gloo, not 'mpi'"), std::string::npos) << bad;
    EXPECT_NE(bad.find("timeout_s must be in (0, 86400]"), std::string::npos) << bad;
    EXPECT_NE(bad.find("bucket_mb must be in (0, 4096]"), std::string::npos) << bad;
    EXPECT_NE(bad.find("unknown key 'ranks' in [run.distributed]"), std::string::npos) << bad;
    EXPECT_NE(bad.find("c.toml:"), std::string::npos) << bad;  // file:line:column
    EXPECT_NE(config_errors(dir, base + "[run.distributed]\nzero_stage = 3\n").find("zero_stage 3 (sharded gradients / parameters) is not built yet"),
              std::string::npos);
    EXPECT_EQ(config_errors(dir, base + "[run.distributed]\nzero_stage = 1\n"), "");
    // NCCL reduces GPU tensors.
    EXPECT_NE(config_errors(dir, base + "[run.distributed]\nbackend = \"nccl\"\n").find("needs [run] device = \"cuda\""),
              std::string::npos);
}

}  // namespace
}  // namespace fthost::test
