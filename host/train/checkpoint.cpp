#include "train/checkpoint.hpp"

#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace fs = std::filesystem;

namespace fthost::host {

nlohmann::json TrainerState::to_json() const {
    return {{"step", step},
            {"data_epoch", data.epoch},
            {"data_cursor", data.cursor},
            {"best_eval_loss", best_eval_loss},
            {"has_best", has_best},
            {"evals_without_improvement", evals_without_improvement},
            {"metrics_size", metrics_size},
            {"tokens", tokens},
            {"seconds", seconds},
            {"base_eval", base_eval},
            {"nonfinite_skips", nonfinite_skips},
            {"no_reward_steps", no_reward_steps},
            {"grader_failures", grader_failures}};
}

TrainerState TrainerState::from_json(const nlohmann::json& j) {
    TrainerState s;
    s.step = j.at("step");
    s.data.epoch = j.at("data_epoch");
    s.data.cursor = j.at("data_cursor");
    s.best_eval_loss = j.at("best_eval_loss");
    s.has_best = j.at("has_best");
    s.evals_without_improvement = j.at("evals_without_improvement");
    s.metrics_size = j.at("metrics_size");
    s.tokens = j.at("tokens");
    s.seconds = j.at("seconds");
    s.base_eval = j.at("base_eval");
    // Absent from checkpoints written before they were counted.
    s.nonfinite_skips = j.value("nonfinite_skips", int64_t{0});
    s.no_reward_steps = j.value("no_reward_steps", int64_t{0});
    s.grader_failures = j.value("grader_failures", nlohmann::json::object());
    return s;
}

static std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
    std::vector<std::pair<int64_t, fs::path>> out;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("step-", 0) != 0 || !fs::exists(e.path() / "trainer_state.json")) continue;
        out.emplace_back(std::stoll(n.substr(5)), e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

void remove_partial_checkpoints(const fs::path& checkpoints_dir) {
    std::error_code ec;
    if (!fs::is_directory(checkpoints_dir, ec)) return;
    for (const auto& e : fs::directory_iterator(checkpoints_dir)) {
        const std::string n = e.path().filename().string();
        // A step-N without trainer_state.json (written last) is one whose removal was cut short.
        const bool torn = n.rfind("step-", 0) == 0 && !fs::exists(e.path() / "trainer_state.json");
        if (n.rfind(".tmp-", 0) == 0 || n.rfind(".old-", 0) == 0 || torn) fs::remove_all(e.path(), ec);
    }
}

void save_checkpoint(const fs::path& checkpoints_dir, const TrainerState& state, const TensorList& trainable,
                     const TensorList& optimizer_state, int64_t keep) {
    fs::create_directories(checkpoints_dir);
    remove_partial_checkpoints(checkpoints_dir);
    const fs::path dir = checkpoints_dir / ("step-" + std::to_string(state.step));
    write_directory_atomically(dir, [&](const fs::path& tmp) {
        save_safetensors((tmp / "trainable.safetensors").string(), trainable);
        save_safetensors((tmp / "optimizer.safetensors").string(), optimizer_state);
        // Dropout and any other sampling continue from the same RNG state.
        at::Tensor rng = at::detail::getDefaultCPUGenerator().get_state();
        save_safetensors((tmp / "rng.safetensors").string(), {{"cpu", rng}});
        write_text_atomically(tmp / "trainer_state.json", state.to_json().dump(2) + "\n");
    });
    // Older checkpoints go under a ".old-" name first: a kill while one is being deleted
    // leaves a name remove_partial_checkpoints knows, never a half-deleted step-N.
    auto all = list_checkpoints(checkpoints_dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
        const fs::path doomed = checkpoints_dir / (".old-" + all[i].second.filename().string());
        fs::rename(all[i].second, doomed);
        fs::remove_all(doomed);
    }
}

std::optional<fs::path> latest_checkpoint(const fs::path& checkpoints_dir) {
    auto all = list_checkpoints(checkpoints_dir);
    if (all.empty()) return std::nullopt;
    return all.back().second;
}

TrainerState load_checkpoint(const fs::path& dir, const TensorList& trainable, AdamW& optimizer) {
    const auto weights = load_safetensors((dir / "trainable.safetensors").string());
    {
        at::NoGradGuard ng;
        for (const auto& [name, p] : trainable) {
            auto it = weights.find(name);
            if (it == weights.end()) throw Error(dir.string() + ": checkpoint lacks '" + name + "'");
            p.copy_(it->second);
        }
    }
    optimizer.load_state(load_safetensors((dir / "optimizer.safetensors").string()));
    const auto rng = load_safetensors((dir / "rng.safetensors").string());
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    gen.set_state(rng.at("cpu"));
    return TrainerState::from_json(nlohmann::json::parse(read_text(dir / "trainer_state.json")));
}

}  // namespace fthost::host
