// world.hpp — which process of a distributed run this is, read from the environment the
// launcher left: torchrun (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT), Slurm's srun
// (SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS, SLURM_STEP_TASKS_PER_NODE, the first host of
// SLURM_NODELIST), or `fthost run --nproc-per-node N`, which sets torchrun's variables.
// With none of them: one process, as a plain `fthost run`.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace fthost::host {

struct World {
    int rank = 0, local_rank = 0, size = 1, local_size = 1;
    std::string master_addr;  // where the rendezvous store listens (rank 0 or the launcher)
    int master_port = 0;
    // torchrun's agent (or fthost's launcher) hosts the store: every rank connects as a
    // client, under the prefix "/worker/attempt_<restart_count>".
    bool agent_store = false;
    int restart_count = 0;
    std::string launcher = "none";  // "torchrun", "slurm" or "none"

    bool distributed() const { return size > 1; }
};

// The world the environment describes; `getenv` is injectable for tests. Throws
// fthost::Error naming the variable when a value is missing or not a number in range.
World world_from_environment(const std::function<std::optional<std::string>(const char*)>& getenv);
World world_from_environment();

// The first host of a Slurm node list: "gpu[03-05,9],cpu1" -> "gpu03", "a,b" -> "a".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace fthost::host
