// run_support.hpp — running a config through the run driver in a test, and reading
// back the run directory's metrics.
#pragma once

#include "io/atomic_file.hpp"
#include "run/run_driver.hpp"
#include "test_support.hpp"

#include <fstream>

namespace fthost::test {

inline std::vector<nlohmann::json> metrics(const fs::path& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

// The bundled quickstart data folder (with a trailing slash).
inline const std::string& quickstart_data() {
    static const std::string dir = std::string(source_dir()) + "/data/quickstart/";
    return dir;
}

// [run] into `out` plus a 3-step stage "base" on a tiny decoder (full fine-tuning with
// `objective` on the bundled `train_file`) that later stages start from.
inline std::string tiny_base_config(const fs::path& out, uint64_t seed, const std::string& objective,
                                    const std::string& train_file, bool packing) {
    return "[run]\noutput_dir = \"" + out.string() + "\"\nseed = " + std::to_string(seed) +
           "\n[[stage]]\nname = \"base\"\n"
           "[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n"
           "num_attention_heads = 4\nnum_key_value_heads = 2\n"
           "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"" + objective + "\"\n"
           "[stage.data]\ntrain = \"" + quickstart_data() + train_file + "\"\nmax_seq_len = 96\n" +
           (packing ? "packing = true\n" : "") + "[stage.train]\nsteps = 3\nbatch_size = " + (packing ? "4" : "8") +
           "\nlr = 3e-3\n" + (packing ? "log_every = 1\n" : "");
}

// Every error that validating `text` as dir/c.toml reports, one per line ("" = valid).
inline std::string config_errors(const fs::path& dir, const std::string& text, const PluginRegistry& reg = registry()) {
    write_file(dir / "c.toml", text);
    Diagnostics diag;
    load_run_config((dir / "c.toml").string(), {}, reg, diag);
    std::string all;
    for (const auto& e : diag.errors) all += e + "\n";
    return all;
}

// A stage's training lines of metrics.jsonl (those with a loss), in order.
inline std::vector<nlohmann::json> lines_of(const fs::path& run, const std::string& stage) {
    std::vector<nlohmann::json> out;
    for (const auto& m : metrics(run))
        if (m["stage"] == stage && m.contains("loss")) out.push_back(m);
    return out;
}

// A stage's entry in the run's summary.json (a failure, and {}, when it has none).
inline nlohmann::json summary_of(const fs::path& run, const std::string& stage) {
    const auto s = nlohmann::json::parse(read_text(run / "summary.json"));
    for (const auto& st : s["stages"])
        if (st["name"] == stage) return st;
    ADD_FAILURE() << "no stage " << stage << " in " << s.dump();
    return {};
}

// Runs (or resumes) a config quietly; returns the run command's exit code.
inline int run(const fs::path& cfg, const std::string& resume = "", int64_t stop_after = 0) {
    RunRequest req{cfg.string(), {}, resume, {}};
    req.stage_options.quiet = true;
    req.stage_options.stop_after_steps = stop_after;
    return run_command(req, registry());
}

}  // namespace fthost::test
