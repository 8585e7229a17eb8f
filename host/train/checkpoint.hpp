// checkpoint.hpp — resumable checkpoints: trainable weights, optimizer moments, RNG
// state and the data stream's position, written to a temporary directory and renamed
// into stages/<name>/checkpoints/step-<N>.
#pragma once

#include "data/batch_stream.hpp"
#include "train/adamw.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>

namespace fthost::host {

struct TrainerState {
    int64_t step = 0;  // optimizer steps completed
    BatchStream::Position data;
    double best_eval_loss = 0;
    bool has_best = false;
    int64_t evals_without_improvement = 0;
    uint64_t metrics_size = 0;  // bytes of metrics.jsonl at this point
    int64_t tokens = 0;
    double seconds = 0;
    nlohmann::json base_eval;  // task metrics of the starting model, measured once

    nlohmann::json to_json() const;
    static TrainerState from_json(const nlohmann::json& j);
};

void save_checkpoint(const std::filesystem::path& checkpoints_dir, const TrainerState& state,
                     const TensorList& trainable, const AdamW& optimizer, int64_t keep);

// The newest complete checkpoint, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& checkpoints_dir);

// Restores weights and optimizer state in place; returns the trainer state.
TrainerState load_checkpoint(const std::filesystem::path& dir, const TensorList& trainable, AdamW& optimizer);

}  // namespace fthost::host
