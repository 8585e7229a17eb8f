// stage_trainer.hpp — trains one [[stage]] top to bottom: setup (model, inputs, data,
// parameterisation, objective, reference), the optimisation loop with accumulation,
// clipping, schedule, eval, early stopping and checkpoints, then the finish: final
// evaluation, the stage's final/ directory and its summary.
#pragma once

#include "config/run_config.hpp"
#include "io/run_dir.hpp"
#include "model/model_session.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace fthost::host {

class Communicator;

struct StageOptions {
    bool resume = false;
    bool quiet = false;  // no progress line (tests)
    // Stop after this many optimizer steps, as if interrupted (tests of --resume); 0 = off.
    int64_t stop_after_steps = 0;
    // The run's ranks (distributed/communicator.hpp); null: this process alone.
    Communicator* comm = nullptr;
    // Optional: called with each completed stage's trained model, after its final/ is
    // written and before the model is freed (tests compare it with what was saved).
    std::function<void(const std::string& stage, ModelSession& model)> on_trained_model;
};

// Runs stage `index` of `rc` into `dir`; returns its summary entry.
nlohmann::json train_stage(const RunConfig& rc, size_t index, const PluginRegistry& registry, RunDir& dir,
                           at::Device device, const StageOptions& opts);

}  // namespace fthost::host
