// stage_trainer.hpp — trains one [[stage]] top to bottom: data, model, parameterisation,
// objective; the optimisation loop with accumulation, clipping, schedule, eval, early
// stopping and checkpoints; then the stage's final/ directory and its summary.
#pragma once

#include "config/run_config.hpp"
#include "run/run_dir.hpp"
#include "train/model_session.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace fthost::host {

struct StageOptions {
    bool resume = false;
    bool quiet = false;  // no progress line (tests)
    // Stop after this many optimizer steps, as if interrupted (tests of --resume); 0 = off.
    int64_t stop_after_steps = 0;
};

// Runs stage `index` of `rc` into `dir`; returns its summary entry.
nlohmann::json train_stage(const RunConfig& rc, size_t index, const PluginRegistry& registry, RunDir& dir,
                           at::Device device, const StageOptions& opts);

// Held-out scores of a model on a stage's eval examples: the graders' task metrics,
// plus preference_accuracy (chosen completion more likely than rejected) for pairs.
std::map<std::string, double> held_out_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                              const TextCodec& codec, ft_data_shape shape, at::Device device);
double preference_accuracy(ModelSession& model, const std::vector<Example>& eval, int64_t batch_size, at::Device device);

// The device a config asks for: cpu, cuda, or auto (cuda when available).
at::Device resolve_device(const std::string& device);

}  // namespace fthost::host
