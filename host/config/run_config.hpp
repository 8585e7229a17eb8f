// run_config.hpp — a whole run's config: [run] and the [[stage]] tables, validated
// strictly (every error collected with file:line:column) after --set overrides.
#pragma once

#include "config/section.hpp"
#include "registry/plugin_registry.hpp"

#include <string>
#include <vector>

namespace fthost::host {

struct PluginSection {
    std::string plugin;            // the plugin's name
    const LoadedPlugin* loaded = nullptr;
    Section config;                // its validated options
    double weight = 1.0;           // graders: the reward weight (the host's `weight` key)
    // Graders: what a failed grading call (crash, timeout, error) means for its items —
    // "skip" (no score: left out of means, rewards and training), "zero" (scored 0) or
    // "fail" (the stage stops) — and the share of a stage's rewards that may be lost
    // before it stops (the host's `on_error` and `max_failure_fraction` keys).
    std::string on_error = "skip";
    double max_failure_fraction = 0.1;
    // Graders flagged FT_PLUGIN_COMBINES_GRADERS: their sub-graders, by name.
    std::vector<std::pair<std::string, PluginSection>> children;
};

// [stage.generation]: how on-policy objectives (grpo, rft) sample their completions.
struct GenerationConfig {
    int64_t num_generations = 8, max_new_tokens = 32, top_k = 0, num_iterations = 1;
    double temperature = 1.0, top_p = 1.0;
    bool mask_truncated_completions = false;
};

struct DataConfig {
    std::string train_file, eval_file;
    double eval_fraction = 0.0;
    int64_t max_seq_len = 256;
    bool packing = false;
    bool skip_malformed = false;
    bool shuffle = true;
    std::string chat_template;  // "" = the starting model's own
    // T5's span corruption of 'text' rows for an encoder-decoder (data/span_corruption.hpp).
    bool span_corruption = false;
    double noise_density = 0.15, mean_noise_span_length = 3.0;
    std::string span_corruption_where;  // the key's file:line:column, for errors when the stage starts
    std::string train_where, eval_where;  // the keys' file:line:column (check_inputs)
};

struct TrainConfig {
    int64_t steps = 0, epochs = 0;
    int64_t batch_size = 8, grad_accum = 1;
    double lr = 1e-4, min_lr_ratio = 0.0, weight_decay = 0.0;
    int64_t warmup_steps = 0;
    double max_grad_norm = 1.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    int64_t log_every = 10, eval_every = 0, checkpoint_every = 200, keep_checkpoints = 2;
    int64_t early_stopping_patience = 0;
    bool precompute_ref_log_probs = false;
    bool disable_dropout = true;
    bool activation_checkpointing = false;
    std::string on_nonfinite = "stop";  // or "skip": a step whose loss or gradient norm is NaN/Inf
    int64_t max_nonfinite_skips = 10;
};

struct EvalConfig {
    int64_t max_new_tokens = 32, batch_size = 64, max_examples = 0;
    bool base = true;  // also score the stage's starting model
    std::string group_by;  // a row field: graders' means per value of it too ("" = none)
};

// init_from and teacher name an earlier stage of the run, or (when they contain a '/')
// a stage's final/ directory on disk, e.g. "runs/quickstart/stages/finetune/final".
bool is_stage_path(const std::string& ref);


struct StageConfig {
    std::string name, init_from, teacher, where;
    std::string init_from_where, teacher_where;  // the keys' file:line:column (check_inputs)
    std::string tokenizer;  // a fresh model's tokenizer directory ("" = the byte tokenizer)
    PluginSection model, param, objective;
    std::vector<PluginSection> graders;
    DataConfig data;
    TrainConfig train;
    EvalConfig eval;
    GenerationConfig generation;
    // [run] settings every stage reads, copied here when the config is loaded.
    bool bf16 = false;         // precision = "bf16": every forward of the stage autocasts
    bool cuda_graphs = true;   // cuda_graphs: its generations replay decode steps on a GPU
};

// [run.distributed]: how the ranks of a distributed run talk (docs/DISTRIBUTED.md).
struct DistributedConfig {
    std::string backend = "auto";  // auto (nccl on a GPU, gloo on a CPU), nccl or gloo
    double timeout_s = 300;        // how long the rendezvous, or a collective, waits for every rank
    double bucket_mb = 25;         // gradients are all-reduced in flat buffers of at most this size
    int64_t zero_stage = 0;        // 1: AdamW's moments sharded over the ranks (train/optimizer_shards.hpp)
};

struct RunConfig {
    std::string file;  // the config's path
    std::string name = "run", output_dir, device = "cpu", precision = "fp32";
    bool cuda_graphs = true;
    uint64_t seed = 0;
    int64_t threads = 0;
    DistributedConfig distributed;
    std::vector<StageConfig> stages;
    std::string resolved_toml;  // the config after --set, as written to the run directory

};

// Parses and validates `file` with `sets` ("key.path=value") applied first. Every
// problem is added to diag; the result is meaningful only when diag.ok().
RunConfig load_run_config(const std::string& file, const std::vector<std::string>& sets,
                          const PluginRegistry& registry, Diagnostics& diag);

// What `fthost validate` (and run and eval, before they start) opens beyond the config,
// cheaply: each data file exists, is readable and its first row parses as a JSON object
// (an error names file:line; with skip_malformed only that it opens); each init_from /
// teacher directory's stage.json, config.json, adapter_config.json and
// model.safetensors.index.json parse and every *.safetensors header in it reads
// (check_safetensors_header, no weights are read). Problems go to diag at the key's
// file:line:column.
void check_inputs(const RunConfig& rc, Diagnostics& diag);

// A stage setting that what its model reads rules out: packing rows that carry fields,
// graders or pair/sampling objectives for a model that has no text or no LM head. `key`
// is "packing", "grader" or "objective". The one list both `fthost validate` (a fresh
// model) and a stage's start (a model from init_from) refuse.
struct InputConflict {
    std::string key, message;
};
std::vector<InputConflict> input_conflicts(const std::string& model_plugin, const ModelTraits& model, bool has_lm_head,
                                           const StageConfig& sc, ft_data_shape shape);

}  // namespace fthost::host
