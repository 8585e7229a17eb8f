#include "run/run_driver.hpp"
#include "train/stop_signal.hpp"

#include "data/dataset.hpp"
#include "distributed/communicator.hpp"
#include "eval/held_out.hpp"
#include "eval/task_eval.hpp"
#include "io/atomic_file.hpp"
#include "io/sha256.hpp"
#include "io/run_dir.hpp"
#include "io/utf8.hpp"
#include "model/device.hpp"
#include "model/model_session.hpp"
#include "model/stage_inputs.hpp"
#include "registry/build_info.hpp"
#include "train/stage_trainer.hpp"

#include <fthost/plugin.hpp>

#include <ATen/Parallel.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <iostream>
#include <thread>


namespace fs = std::filesystem;

namespace fthost::host {
namespace {

std::string now_iso() {
    const std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

nlohmann::json make_manifest(const RunConfig& rc, at::Device device, const Communicator& comm) {
    nlohmann::json plugins = nlohmann::json::array();
    std::set<std::string> seen;
    auto add = [&](const PluginSection& p) {
        if (!p.loaded || !seen.insert(std::to_string(p.loaded->desc->kind) + p.plugin).second) return;
        plugins.push_back({{"name", p.plugin},
                           {"kind", kind_name(p.loaded->desc->kind)},
                           {"version", p.loaded->desc->version ? p.loaded->desc->version : ""},
                           {"file", p.loaded->file},
                           {"sha256", sha256_file(p.loaded->file)}});
    };
    nlohmann::json datasets = nlohmann::json::object();
    nlohmann::json models_from = nlohmann::json::object();  // stage results of other runs this one reads
    for (const auto& s : rc.stages) {
        for (const auto& ref : {s.init_from, s.teacher})
            if (is_stage_path(ref) && !models_from.contains(ref)) {
                nlohmann::json files = nlohmann::json::object();
                // Everything that defines the model: stage.json / config.json, weights, adapters.
                for (const auto& e : fs::directory_iterator(ref)) {
                    const std::string ext = e.path().extension().string();
                    if (e.is_regular_file() && (ext == ".json" || ext == ".safetensors"))
                        files[e.path().filename().string()] = sha256_file(e.path().string());
                }
                models_from[ref] = files;
            }
        add(s.model), add(s.param), add(s.objective);
        for (const auto& g : s.graders) add(g);
        for (const auto& f : {s.data.train_file, s.data.eval_file})
            if (!f.empty() && !datasets.contains(f)) datasets[f] = sha256_file(f);
    }
    return {{"fthost_version", build_info().version},
            {"git_commit", build_info().git_commit},
            {"build", build_info_json()},
            {"config", rc.file},
            {"seed", rc.seed},
            {"plugins", plugins},
            {"datasets", datasets},
            {"models_from", models_from},
            {"hardware", {{"device", device.str()}, {"cpu_threads", at::get_num_threads()},
                          {"hardware_concurrency", std::thread::hardware_concurrency()}}},
            {"distributed", {{"world_size", comm.size()}, {"backend", comm.backend()},
                             {"launcher", comm.world().launcher}}},
            {"started", now_iso()}};
}

// Puts a stage's entry into summary.json's list, replacing an earlier attempt's.
void record(nlohmann::json& summary, const nlohmann::json& stage) {
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& s : summary["stages"])
        if (s["name"] != stage["name"]) stages.push_back(s);
    stages.push_back(stage);
    summary["stages"] = stages;
}

// Marks a stage and the run failed in summary.json, the error as valid UTF-8. Never
// throws: when even that write fails (disk full) it says so, and the caller rethrows the
// stage's own error, which is the one the user needs to see.
void record_failure(const RunDir& dir, nlohmann::json& summary, const std::string& stage, const std::string& error) {
    try {
        record(summary, {{"name", stage}, {"status", "failed"}, {"error", utf8_lossy(error)}});
        summary["status"] = "failed";
        dir.write_json("summary.json", summary);
    } catch (const std::exception& e) {
        // Out of space: the summary's own blocks, freed by truncating it, hold the record.
        try {
            overwrite_text_in_place(dir.root() / "summary.json",
                                    summary.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
        } catch (const std::exception&) {
            std::cerr << "fthost: could not record the failure in " << (dir.root() / "summary.json").string() << ": "
                      << utf8_lossy(e.what()) << "\n";
        }
    }
}

// A new run directory with config.toml, manifest.json and summary.json, made whole in a
// temporary sibling and renamed into place: a full disk or a read-only folder leaves
// nothing behind that would block the next attempt.
void create_run_directory(const fs::path& root, const RunConfig& rc, const nlohmann::json& manifest,
                          const nlohmann::json& summary) {
    try {
        if (root.has_parent_path()) fs::create_directories(root.parent_path());
    } catch (const fs::filesystem_error& e) {
        throw Error("cannot create the run directory " + root.string() + ": " + e.code().message() + " (" +
                        e.path1().string() + "); choose another [run] output_dir in " + rc.file,
                    FT_ERR_CONFIG);
    }
    write_directory_atomically(root, [&](const fs::path& tmp) {
        write_text_atomically(tmp / "config.toml", rc.resolved_toml);
        const RunDir staged(tmp);
        staged.write_json("manifest.json", manifest);
        staged.write_json("summary.json", summary);
    });
}

void print_summary(const nlohmann::json& summary) {
    std::cout << "\nstage results (held-out eval):\n";
    for (const auto& s : summary["stages"]) {
        std::cout << "  " << s["name"].get<std::string>() << " [" << s["status"].get<std::string>() << "]";
        if (s.contains("eval"))
            for (const auto& [k, v] : s["eval"].items()) {
                std::cout << "  " << k << " ";
                if (s.contains("base_eval") && s["base_eval"].contains(k))
                    std::cout << s["base_eval"][k].get<double>() << " -> ";
                std::cout << (v.is_number() ? v.get<double>() : std::nan(""));
            }
        if (s.contains("teacher_eval"))
            for (const auto& [k, v] : s["teacher_eval"].items())
                std::cout << "  (teacher " << k << " " << (v.is_number() ? v.get<double>() : std::nan("")) << ")";
        std::cout << "\n";
    }
}

}  // namespace

std::optional<RunConfig> load_valid_config(const std::string& file, const std::vector<std::string>& sets,
                                           const PluginRegistry& registry, bool report) {
    Diagnostics diag;
    RunConfig rc = load_run_config(file, sets, registry, diag);
    check_inputs(rc, diag);  // data files and checkpoints open, reported with the config's errors
    if (!diag.ok()) {
        if (!report) return std::nullopt;
        for (const auto& e : diag.errors) std::cerr << "error: " << e << "\n";
        std::cerr << diag.errors.size() << " error(s) in " << file << "\n";
        return std::nullopt;
    }
    return rc;
}

int run_command(const RunRequest& req, const PluginRegistry& registry) {
    const World world = world_from_environment();
    auto rc_opt = load_valid_config(req.config, req.sets, registry, world.rank == 0);  // rank 0 reports for all
    if (!rc_opt) return 2;
    RunConfig rc = *rc_opt;
    if (rc.threads > 0) at::set_num_threads(static_cast<int>(rc.threads));
    // Ranks sharing a machine share its cores (torchrun sets OMP_NUM_THREADS=1 for the same reason).
    else if (world.local_size > 1)
        at::set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.local_size));
    const at::Device device = resolve_device(rc.device, world.local_rank);
    const std::unique_ptr<Communicator> comm = Communicator::connect(world, rc.distributed, device);
    comm->set_context("the run's start");
    const bool leader = comm->leader();  // rank 0 alone writes the run directory and prints progress

    // A worker group that torchrun (or a Slurm requeue) restarted continues its own run.
    const bool restarted = req.resume_dir.empty() && world.restart_count > 0 &&
                           fs::exists(fs::path(rc.output_dir) / "summary.json");
    const bool resume = !req.resume_dir.empty() || restarted;
    RunDir dir(!req.resume_dir.empty() ? fs::path(req.resume_dir) : fs::path(rc.output_dir));
    dir.set_writes(leader);
    if (restarted && leader)
        std::cerr << "fthost: restart " << world.restart_count << " of the " << world.launcher << " job: resuming "
                  << dir.root().string() << "\n";
    nlohmann::json summary;
    if (resume) {
        if (!fs::exists(dir.root() / "config.toml") || !fs::exists(dir.root() / "summary.json"))
            throw Error(dir.root().string() + " is not a run directory (no config.toml / summary.json)", FT_ERR_CONFIG);
        if (read_text(dir.root() / "config.toml") != rc.resolved_toml)
            throw Error("the config (with --set) differs from the one " + dir.root().string() +
                            " was started with; resume with the same config and --set values",
                        FT_ERR_CONFIG);
        summary = dir.read_json("summary.json");
        // Running again: a "failed" or "interrupted" left by the last attempt no longer holds.
        summary["status"] = "running";
        dir.write_json("summary.json", summary);
    } else {
        if (leader && fs::exists(dir.root()) && !fs::is_empty(dir.root()))
            throw Error("run directory " + dir.root().string() +
                            " already exists and is not empty: pass --resume " + dir.root().string() +
                            " to continue it, or choose another [run] output_dir",
                        FT_ERR_CONFIG);
        summary = {{"run", rc.name}, {"status", "running"}, {"stages", nlohmann::json::array()}};
        if (leader) create_run_directory(dir.root(), rc, make_manifest(rc, device, *comm), summary);
        comm->barrier("barrier after creating the run directory");
    }

    for (size_t i = 0; i < rc.stages.size(); ++i) {
        const auto& sc = rc.stages[i];
        bool done = false;
        for (const auto& s : summary["stages"])
            if (s["name"] == sc.name && (s["status"] == "completed" || s["status"] == "early_stopped")) done = true;
        if (done) continue;
        if (stop_requested()) {  // signalled while the previous stage finished
            summary["status"] = "interrupted";
            dir.write_json("summary.json", summary);
            std::cerr << "fthost: interrupted before stage '" << sc.name << "'; continue with: fthost run " << req.config
                      << " --resume " << dir.root().string() << "\n";
            return 128 + stop_signal();
        }
        if (!req.stage_options.quiet && leader)
            std::cerr << "fthost: stage '" << sc.name << "' (" << sc.objective.plugin << " + " << sc.param.plugin << ")"
                      << (comm->size() > 1 ? " on " + std::to_string(comm->size()) + " ranks (" + comm->backend() + ")" : "")
                      << "\n";
        StageOptions so = req.stage_options;
        so.resume = resume;
        so.comm = comm.get();
        so.quiet = so.quiet || !leader;
        nlohmann::json result;
        try {
            result = train_stage(rc, i, registry, dir, device, so);
        } catch (const std::exception& e) {
            // Leave the directory saying what happened: the stage failed, its last
            // checkpoint (if any) is intact, and --resume can continue once fixed.
            record_failure(dir, summary, sc.name, e.what());
            throw;
        }
        record(summary, result);
        if (result["status"] == "interrupted") {
            summary["status"] = "interrupted";
            dir.write_json("summary.json", summary);
            if (!result.contains("signal")) return 3;  // a test's stop_after_steps
            if (leader) std::cerr << "fthost: stage '" << sc.name << "' interrupted at step " << result["steps"] << " ("
                      << result.value("signal", "signal") << ")"
                      << (result.contains("checkpoint") ? "; checkpoint " + result["checkpoint"].get<std::string>() : "")
                      << "; continue with: fthost run " << req.config << " --resume " << dir.root().string() << "\n";
            // The shell's convention: 130 for SIGINT, 143 for SIGTERM (on every rank: the ranks stop together).
            return 128 + (result["signal"] == "SIGINT" ? SIGINT : SIGTERM);
        }
        dir.write_json("summary.json", summary);
    }
    summary["status"] = "completed";
    dir.write_json("summary.json", summary);
    nlohmann::json manifest = dir.read_json("manifest.json");
    manifest["finished"] = now_iso();
    dir.write_json("manifest.json", manifest);
    if (!req.stage_options.quiet && leader) {
        print_summary(summary);
        std::cout << "run directory: " << dir.root().string() << "\n";
    }
    return 0;
}

int eval_command(const std::string& config, const std::vector<std::string>& sets, const std::string& stage,
                 const PluginRegistry& registry) {
    auto rc_opt = load_valid_config(config, sets, registry);
    if (!rc_opt) return 2;
    const RunConfig& rc = *rc_opt;
    if (rc.threads > 0) at::set_num_threads(static_cast<int>(rc.threads));
    const at::Device device = resolve_device(rc.device);
    RunDir dir(rc.output_dir);
    nlohmann::json out = nlohmann::json::object();
    for (const auto& sc : rc.stages) {
        if (!stage.empty() && sc.name != stage) continue;
        const fs::path final_dir = dir.final_dir(sc.name);
        if (!fs::exists(final_dir / "stage.json"))
            throw Error("stage '" + sc.name + "' has no result in " + final_dir.string() + " (run it first)", FT_ERR_CONFIG);
        auto model = ModelSession::from_stage_dir(final_dir, registry, device);
        const StageInputs inputs = stage_inputs(*model, final_dir, sc.data.chat_template);
        const TextCodec* codec = inputs.codec.get();
        const auto* ovt = static_cast<const ft_objective_vtable*>(sc.objective.loaded->desc->vtable);
        const ft_data_shape shape = objective_traits(ovt).data_shape;
        Datasets data = load_datasets(sc.data, inputs.reader, ovt->label_policy, rc.seed, shape, sc.train.batch_size);
        if (data.eval.empty()) throw Error("stage '" + sc.name + "' has no eval data (set data.eval or data.eval_fraction)", FT_ERR_CONFIG);
        nlohmann::json s = {{"examples", data.eval.size()}};
        for (const auto& [k, v] : held_out_scores(*model, data.eval, sc, codec, shape, device)) s[k] = v;
        // The model the stage started from, scored the same way.
        if (!sc.init_from.empty()) {
            const fs::path base = is_stage_path(sc.init_from) ? fs::path(sc.init_from) : dir.final_dir(sc.init_from);
            auto start = ModelSession::from_stage_dir(base, registry, device);
            nlohmann::json b = nlohmann::json::object();
            for (const auto& [k, v] : held_out_scores(*start, data.eval, sc, codec, shape, device)) b[k] = v;
            s["base"] = b;
        }
        out[sc.name] = s;
    }
    if (!stage.empty() && out.empty()) throw Error("no stage named '" + stage + "' in " + config, FT_ERR_CONFIG);
    std::cout << out.dump(2) << "\n";
    return 0;
}

}  // namespace fthost::host
