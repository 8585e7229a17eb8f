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
    int64_t nonfinite_skips = 0;     // steps skipped for a NaN/Inf loss or gradient (on_nonfinite = "skip")
    int64_t no_reward_steps = 0;     // on-policy steps without an update: every group lost a reward
    nlohmann::json grader_failures = nlohmann::json::object();  // train/reward_ledger.hpp

    nlohmann::json to_json() const;
    static TrainerState from_json(const nlohmann::json& j);
};

// `optimizer_state`: AdamW::state() of one process (under ZeRO-1, gathered from the owners).
void save_checkpoint(const std::filesystem::path& checkpoints_dir, const TrainerState& state,
                     const TensorList& trainable, const TensorList& optimizer_state, int64_t keep);

// Removes what an interrupted save or pruning left (".tmp-step-N", ".old-step-N", a
// step-N without its trainer_state.json, which is written last): a checkpoint
// written off schedule (a stop request) is never written again to replace it. Only one
// process writes a run's checkpoints, so nothing partial is anyone's work in progress.
void remove_partial_checkpoints(const std::filesystem::path& checkpoints_dir);

// The newest complete checkpoint, if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& checkpoints_dir);

// Restores weights and optimizer state in place; returns the trainer state.
TrainerState load_checkpoint(const std::filesystem::path& dir, const TensorList& trainable, AdamW& optimizer);

}  // namespace fthost::host
