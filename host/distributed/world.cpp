#include "distributed/world.hpp"

#include <fthost/plugin.hpp>

#include <cstdlib>

namespace fthost::host {
namespace {

using Getenv = std::function<std::optional<std::string>(const char*)>;

int int_var(const Getenv& getenv, const char* name, int min, int max, const char* launcher) {
    const auto v = getenv(name);
    if (!v) throw Error(std::string(launcher) + " launch: the environment variable " + name + " is not set", FT_ERR_CONFIG);
    try {
        size_t used = 0;
        const long n = std::stol(*v, &used);
        if (used == v->size() && n >= min && n <= max) return static_cast<int>(n);
    } catch (const std::exception&) {
    }
    throw Error(std::string(launcher) + " launch: " + name + "='" + *v + "' is not a whole number in [" +
                    std::to_string(min) + ", " + std::to_string(max) + "]",
                FT_ERR_CONFIG);
}

bool truthy(const std::optional<std::string>& v) { return v && (*v == "1" || *v == "True" || *v == "true"); }

World from_torchrun(const Getenv& getenv) {
    World w;
    w.launcher = "torchrun";
    w.size = int_var(getenv, "WORLD_SIZE", 1, 1 << 20, "torchrun");
    w.rank = int_var(getenv, "RANK", 0, w.size - 1, "torchrun");
    w.local_rank = getenv("LOCAL_RANK") ? int_var(getenv, "LOCAL_RANK", 0, w.size - 1, "torchrun") : w.rank;
    w.local_size = getenv("LOCAL_WORLD_SIZE") ? int_var(getenv, "LOCAL_WORLD_SIZE", 1, w.size, "torchrun") : w.size;
    // Needed by more than one rank; read for one too (a single rank may still make a
    // process group: [run.distributed] with a named backend).
    if (w.size > 1 || getenv("MASTER_ADDR")) {
        const auto addr = getenv("MASTER_ADDR");
        if (!addr || addr->empty()) throw Error("torchrun launch: MASTER_ADDR is not set", FT_ERR_CONFIG);
        w.master_addr = *addr;
        w.master_port = int_var(getenv, "MASTER_PORT", 1, 65535, "torchrun");
    }
    w.agent_store = truthy(getenv("TORCHELASTIC_USE_AGENT_STORE"));
    if (getenv("TORCHELASTIC_RESTART_COUNT"))
        w.restart_count = int_var(getenv, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 20, "torchrun");
    return w;
}

// srun: one task per rank; the store on the first node, at MASTER_PORT or 29500. Only a
// job step started by srun counts (SLURM_STEP_NUM_TASKS): the batch script of an sbatch
// job sees SLURM_NTASKS too, and a plain `fthost run` there is one process.
World from_slurm(const Getenv& getenv) {
    World w;
    w.launcher = "slurm";
    w.size = int_var(getenv, "SLURM_STEP_NUM_TASKS", 1, 1 << 20, "Slurm");
    w.rank = int_var(getenv, "SLURM_PROCID", 0, w.size - 1, "Slurm");
    w.local_rank = int_var(getenv, "SLURM_LOCALID", 0, w.size - 1, "Slurm");
    // SLURM_STEP_TASKS_PER_NODE reads "4", "4(x2)" or "2,1": this node's count is not
    // named, the first one is taken (it sets only the CPU threads per rank).
    if (auto per_node = getenv("SLURM_STEP_TASKS_PER_NODE")) {
        const std::string first = per_node->substr(0, per_node->find_first_of("(,"));
        w.local_size = int_var([&](const char*) { return std::optional<std::string>(first); },
                               "SLURM_STEP_TASKS_PER_NODE", 1, w.size, "Slurm");
    } else {
        w.local_size = 1;
    }
    if (w.size > 1) {
        if (auto addr = getenv("MASTER_ADDR")) {
            w.master_addr = *addr;
        } else {
            auto nodes = getenv("SLURM_STEP_NODELIST");
            if (!nodes) nodes = getenv("SLURM_JOB_NODELIST");
            if (!nodes) nodes = getenv("SLURM_NODELIST");
            if (!nodes) throw Error("Slurm launch: neither MASTER_ADDR nor SLURM_NODELIST is set", FT_ERR_CONFIG);
            w.master_addr = first_slurm_host(*nodes);
        }
        w.master_port = getenv("MASTER_PORT") ? int_var(getenv, "MASTER_PORT", 1, 65535, "Slurm") : 29500;
    }
    if (getenv("SLURM_RESTART_COUNT")) w.restart_count = int_var(getenv, "SLURM_RESTART_COUNT", 0, 1 << 20, "Slurm");
    return w;
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
    // Up to the first ',' outside brackets; a bracket's first range gives the first number.
    const size_t bracket = nodelist.find('[');
    const size_t comma = nodelist.find(',');
    if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket))
        return nodelist.substr(0, comma);
    const std::string prefix = nodelist.substr(0, bracket);
    const size_t end = nodelist.find_first_of("-,]", bracket + 1);
    if (end == std::string::npos) throw Error("Slurm launch: cannot read the node list '" + nodelist + "'", FT_ERR_CONFIG);
    return prefix + nodelist.substr(bracket + 1, end - bracket - 1);
}

World world_from_environment(const Getenv& getenv) {
    if (getenv("WORLD_SIZE") || getenv("RANK")) return from_torchrun(getenv);
    if (getenv("SLURM_PROCID") && getenv("SLURM_STEP_NUM_TASKS")) return from_slurm(getenv);
    return World{};
}

World world_from_environment() {
    return world_from_environment([](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
    });
}

}  // namespace fthost::host
