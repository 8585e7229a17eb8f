#include "config/run_config.hpp"

#include "io/hf_files.hpp"
#include "io/safetensors.hpp"
#include "io/utf8.hpp"
#include "config/host_api.hpp"
#include "tokenizer/chat_template.hpp"
#include "tokenizer/text_codec.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

namespace fthost::host {

using fthost::option;

// ---- the host's own sections, declared like plugin options ------------------------------

static const ft_option kRunOptions[] = {
    option("name", FT_OPT_STRING, "\"run\"", "run name, shown in the progress line and the manifest"),
    option("output_dir", FT_OPT_STRING, nullptr, "run directory (relative to the working directory)", true),
    option("seed", FT_OPT_INT, "42", "seed for initialisation, shuffling and dropout"),
    option("threads", FT_OPT_INT, "0", "CPU threads for LibTorch (0 = LibTorch's default)"),
    option("device", FT_OPT_STRING, "\"cpu\"", "cpu, cuda or auto"),
    option("precision", FT_OPT_STRING, "\"fp32\"",
           "fp32, or bf16: autocast forward passes to bfloat16, fp32 master weights and optimizer state"),
    option("cuda_graphs", FT_OPT_BOOL, "true",
           "on a GPU, replay each decode step (eval, rollouts) from a CUDA graph; false launches every kernel"),
};

static const ft_option kDistributedOptions[] = {
    option("backend", FT_OPT_STRING, "\"auto\"", "auto (nccl on a GPU, gloo on a CPU), nccl or gloo"),
    option("timeout_s", FT_OPT_FLOAT, "300.0",
           "seconds the rendezvous, or a collective, waits for every rank before the run stops naming the rank"),
    option("bucket_mb", FT_OPT_FLOAT, "25.0", "gradients are all-reduced in flat buffers of at most this many MiB"),
    option("zero_stage", FT_OPT_INT, "0",
           "0: every rank keeps the whole optimizer state; 1: each AdamW moment on one rank (ZeRO-1)"),
};

static const ft_option kStageOptions[] = {
    option("name", FT_OPT_STRING, nullptr, "stage name (unique; names stages/<name>/ in the run directory)", true),
    option("init_from", FT_OPT_STRING, "\"\"",
           "start from an earlier stage's final model, or a final/ directory path (contains '/')"),
    option("teacher", FT_OPT_STRING, "\"\"",
           "the frozen teacher for distillation: an earlier stage, or a final/ directory path"),
    option("tokenizer", FT_OPT_STRING, "\"\"",
           "a directory with a tokenizer (tokenizer.json, or tokenizer.model / spiece.model, with tokenizer_config.json) "
           "for a model built from [stage.model]; empty: fthost's byte-level tokenizer"),
};

static const ft_option kDataOptions[] = {
    option("train", FT_OPT_STRING, nullptr, "training JSONL file", true),
    option("eval", FT_OPT_STRING, "\"\"", "eval JSONL file (or use eval_fraction)"),
    option("eval_fraction", FT_OPT_FLOAT, "0.0", "fraction of train held out for eval when no eval file"),
    option("max_seq_len", FT_OPT_INT, "256", "tokens per example (longer ones are truncated)"),
    option("packing", FT_OPT_BOOL, "false", "pack several examples into one row, each attending only to itself"),
    option("skip_malformed", FT_OPT_BOOL, "false", "count and skip malformed JSONL lines instead of failing"),
    option("shuffle", FT_OPT_BOOL, "true", "shuffle training examples each epoch (from the run seed)"),
    option("chat_template", FT_OPT_STRING, "\"\"",
           "how 'messages' rows become text: chatml, qwen3, llama3, mistral, gemma, gemma3, phi3 or plain (\"\": the one the starting "
           "checkpoint's tokenizer_config.json holds; chatml for fthost's byte-level models)"),
    option("span_corruption", FT_OPT_BOOL, "false",
           "encoder-decoders: each 'text' row becomes T5's span-corruption pair (random spans -> sentinels "
           "<extra_id_N> in the source, the spans in the target), masked anew each epoch"),
    option("noise_density", FT_OPT_FLOAT, "0.15", "span_corruption: the share of a text's tokens masked, in (0, 1)"),
    option("mean_noise_span_length", FT_OPT_FLOAT, "3.0", "span_corruption: the mean masked span, in tokens (>= 1)"),
};

static const ft_option kTrainOptions[] = {
    option("steps", FT_OPT_INT, "0", "optimizer steps (0: derive from epochs)"),
    option("epochs", FT_OPT_INT, "0", "passes over the training data when steps = 0"),
    option("batch_size", FT_OPT_INT, "8", "rows per micro-batch"),
    option("grad_accum", FT_OPT_INT, "1", "micro-batches per optimizer step"),
    option("lr", FT_OPT_FLOAT, "1e-4", "peak learning rate"),
    option("min_lr_ratio", FT_OPT_FLOAT, "0.0", "cosine decay ends at lr * min_lr_ratio"),
    option("warmup_steps", FT_OPT_INT, "0", "linear warmup steps"),
    option("weight_decay", FT_OPT_FLOAT, "0.0", "AdamW decoupled weight decay (never on norms and biases)"),
    option("max_grad_norm", FT_OPT_FLOAT, "1.0", "global gradient-norm clip (0 = off)"),
    option("adam_beta1", FT_OPT_FLOAT, "0.9", "AdamW beta1"),
    option("adam_beta2", FT_OPT_FLOAT, "0.999", "AdamW beta2"),
    option("adam_eps", FT_OPT_FLOAT, "1e-8", "AdamW epsilon"),
    option("log_every", FT_OPT_INT, "10", "steps between metrics.jsonl lines"),
    option("eval_every", FT_OPT_INT, "0", "steps between eval-loss evaluations (0 = only at the end)"),
    option("checkpoint_every", FT_OPT_INT, "200",
           "steps between resumable checkpoints (0 = none; SIGINT/SIGTERM always write one)"),
    option("keep_checkpoints", FT_OPT_INT, "2", "newest checkpoints kept"),
    option("early_stopping_patience", FT_OPT_INT, "0", "stop after this many evals without a better eval loss (0 = off)"),
    option("precompute_ref_log_probs", FT_OPT_BOOL, "false",
           "compute the reference log-probs of all data in one pass before training, then free the reference"),
    option("disable_dropout", FT_OPT_BOOL, "true",
           "no dropout in stages with a reference or teacher (preference, distillation), as TRL does"),
    option("activation_checkpointing", FT_OPT_BOOL, "false",
           "keep only each model block's input in forward passes and recompute the block in backward: "
           "less memory for one more forward"),
    option("on_nonfinite", FT_OPT_STRING, "\"stop\"",
           "a NaN/Inf loss or gradient norm: stop (naming the step and micro-batch) or skip the step (no update)"),
    option("max_nonfinite_skips", FT_OPT_INT, "10", "on_nonfinite = \"skip\": the stage stops after more skipped steps"),
};

static const ft_option kEvalOptions[] = {
    option("max_new_tokens", FT_OPT_INT, "32", "tokens generated per eval prompt for graders"),
    option("batch_size", FT_OPT_INT, "64", "prompts generated at once"),
    option("max_examples", FT_OPT_INT, "0", "cap on eval examples scored by graders (0 = all)"),
    option("base", FT_OPT_BOOL, "true", "also score the model the stage starts from"),
    option("group_by", FT_OPT_STRING, "\"\"",
           "a row field (a string): graders' means are also reported per value, as \"<field>:<value>/<grader>\""),
};

static const ft_option kGenerationOptions[] = {
    option("num_generations", FT_OPT_INT, "8", "completions sampled per prompt (the group)"),
    option("max_new_tokens", FT_OPT_INT, "32", "tokens per completion at most"),
    option("temperature", FT_OPT_FLOAT, "1.0", "sampling temperature (log-probs are taken at the same temperature)"),
    option("top_k", FT_OPT_INT, "0", "sample from the k most likely tokens (0 = off)"),
    option("top_p", FT_OPT_FLOAT, "1.0", "nucleus sampling mass (1 = off)"),
    option("num_iterations", FT_OPT_INT, "1", "optimizer steps per generation batch (stored old log-probs past the first)"),
    option("mask_truncated_completions", FT_OPT_BOOL, "false", "completions cut at max_new_tokens get no loss"),
};

template <size_t N>
static Section check(const toml::table* t, const std::string& file, const std::string& path, const ft_option (&o)[N],
                     Diagnostics& d) {
    return validate_section(t, file, path, o, N, d);
}

// Reads a key that validated; a key with a wrong type was reported and keeps its default.
template <class T>
static void read(const Section& s, const char* key, T& out) {
    if (!s.has(key)) return;
    if constexpr (std::is_same_v<T, bool>) out = s.get_bool(key);
    else if constexpr (std::is_same_v<T, std::string>) out = s.get_string(key);
    else if constexpr (std::is_floating_point_v<T>) out = s.get_float(key);
    else out = static_cast<T>(s.get_int(key));
}

bool is_stage_path(const std::string& ref) { return ref.find('/') != std::string::npos; }

std::vector<InputConflict> input_conflicts(const std::string& model_plugin, const ModelTraits& mt, bool has_lm_head,
                                           const StageConfig& sc, ft_data_shape shape) {
    std::vector<InputConflict> out;
    const std::string model = "model '" + model_plugin + "'";
    if ((mt.inputs & (FT_INPUT_FIELDS | FT_INPUT_SOURCE)) && sc.data.packing)
        out.push_back({"packing", model +
                                      ((mt.inputs & FT_INPUT_FIELDS) ? " reads its own fields (encode_row)"
                                                                     : " reads a source beside each row") +
                                      ", which are never packed; set packing = false"});
    if (sc.data.span_corruption && (!(mt.inputs & FT_INPUT_SOURCE) || !(mt.inputs & FT_INPUT_TEXT)))
        out.push_back({"span_corruption", "[stage.data] span_corruption = true needs an encoder-decoder that reads text "
                                          "(FT_INPUT_SOURCE): " + model + " is not one; set span_corruption = false"});
    const bool text = (mt.inputs & FT_INPUT_TEXT) != 0;
    if (text && has_lm_head) return out;
    const std::string why = text ? " has no LM head" : " reads no text";
    if (!sc.graders.empty())
        out.push_back({"grader", model + why + ", so there is nothing for graders to score: remove the stage's graders"});
    if (shape != FT_DATA_SEQUENCES)
        out.push_back({"objective", model + why + "; objective '" + sc.objective.plugin +
                                        "' compares or samples completions (pairs, feedback or sampling)"});
    return out;
}

// ---- --set key.path=value ---------------------------------------------------------------

static void apply_set(toml::table& root, const std::string& assignment, Diagnostics& diag) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
        diag.add("--set " + assignment, "expected key.path=value");
        return;
    }
    const std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
    std::vector<std::string> parts;
    std::stringstream ss(path);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    toml::table* t = &root;
    size_t i = 0;
    if (parts.size() >= 3 && parts[0] == "stage") {
        // stage.<name>.key...: the stage is addressed by its name.
        toml::array* stages = root["stage"].as_array();
        toml::table* found = nullptr;
        if (stages)
            for (auto& s : *stages)
                if (auto* st = s.as_table(); st && (*st)["name"].value_or(std::string()) == parts[1]) found = st;
        if (!found) {
            diag.add("--set " + assignment, "no stage named '" + parts[1] + "'");
            return;
        }
        t = found;
        i = 2;
    }
    for (; i + 1 < parts.size(); ++i) {
        toml::node* n = t->get(parts[i]);
        if (!n) n = &t->insert_or_assign(parts[i], toml::table{}).first->second;
        t = n->as_table();
        if (!t) {
            diag.add("--set " + assignment, "'" + parts[i] + "' is not a table");
            return;
        }
    }
    // The value is a TOML literal when it parses as one, else a plain string.
    try {
        auto doc = toml::parse("v = " + text);
        t->insert_or_assign(parts.back(), std::move(*doc.get("v")));
    } catch (const toml::parse_error&) {
        t->insert_or_assign(parts.back(), text);
    }
}

// ---- plugin sections -----------------------------------------------------------------------

static PluginSection plugin_section(const toml::table* t, ft_kind kind, const std::string& file,
                                    const std::string& path, const PluginRegistry& reg, Diagnostics& diag,
                                    const std::string& where_parent) {
    PluginSection ps;
    if (!t) {
        diag.add(where_parent, "missing table [" + path + "] with a `plugin` key");
        return ps;
    }
    auto name = (*t)["plugin"].value<std::string>();
    if (!name) {
        diag.add(where_of(file, *t), "[" + path + "] needs `plugin = \"<" + kind_name(kind) + " name>\"`");
        return ps;
    }
    ps.plugin = *name;
    ps.loaded = reg.find(kind, *name);
    if (!ps.loaded) {
        try {
            reg.require(kind, *name);
        } catch (const std::exception& e) {
            diag.add(where_of(file, *t->get("plugin")), e.what());
        }
        return ps;
    }
    const ft_plugin_desc* d = ps.loaded->desc;
    const size_t errors_before = diag.errors.size();
    // Graders carry the host's `weight` beside their own options, and combining graders
    // their sub-graders under `graders`.
    const bool combines = kind == FT_KIND_GRADER && (d->flags & FT_PLUGIN_COMBINES_GRADERS);
    std::set<std::string> host_keys = {"plugin"};
    if (kind == FT_KIND_GRADER) host_keys.insert({"weight", "on_error", "max_failure_fraction"});
    if (combines) host_keys.insert("graders");
    ps.config = validate_section(t, file, path, d->options, d->option_count, diag, host_keys);
    if (combines) {
        const toml::table* subs = (*t)["graders"].as_table();
        if (!subs || subs->empty())
            diag.add(where_of(file, *t), "[" + path + "] needs sub-graders: [" + path + ".graders.<name>] tables with a `plugin`");
        if (subs)
            for (const auto& [name, node] : *subs) {
                const std::string sub_path = path + " graders." + std::string(name.str());
                PluginSection child = plugin_section(node.as_table(), FT_KIND_GRADER, file, sub_path, reg, diag, where_of(file, *t));
                if (child.loaded && (child.loaded->desc->flags & FT_PLUGIN_COMBINES_GRADERS))
                    diag.add(where_of(file, node.source()), "[" + sub_path + "] combines graders itself; they do not nest");
                ps.children.emplace_back(std::string(name.str()), std::move(child));
            }
    }
    if (kind == FT_KIND_GRADER && t->contains("weight")) {
        if (auto w = (*t)["weight"].value<double>()) ps.weight = *w;
        else diag.add(where_of(file, *t->get("weight")), "[" + path + "] weight must be a number");
    }
    if (kind == FT_KIND_GRADER && t->contains("on_error")) {
        auto v = (*t)["on_error"].value<std::string>();
        if (v && (*v == "skip" || *v == "zero" || *v == "fail")) ps.on_error = *v;
        else diag.add(where_of(file, *t->get("on_error")), "[" + path + "] on_error must be \"skip\", \"zero\" or \"fail\"");
    }
    if (kind == FT_KIND_GRADER && t->contains("max_failure_fraction")) {
        auto v = (*t)["max_failure_fraction"].value<double>();
        if (v && *v >= 0 && *v <= 1) ps.max_failure_fraction = *v;
        else diag.add(where_of(file, *t->get("max_failure_fraction")), "[" + path + "] max_failure_fraction must be a number in [0, 1]");
    }
    // Values the types allow may still be out of range: the plugin checks them itself.
    if (diag.errors.size() == errors_before && d->validate) {
        ft_error err{};
        if (d->validate(host_api(), &ps.config, &err) != FT_OK) diag.errors.push_back(err.message);
    }
    return ps;
}

static RunConfig build(toml::table& root, const std::string& file, const PluginRegistry& reg, Diagnostics& diag) {
    RunConfig rc;
    rc.file = file;
    std::ostringstream os;
    os << root;
    rc.resolved_toml = os.str() + "\n";

    for (const auto& [key, node] : root) {
        const std::string k(key.str());
        if (k != "run" && k != "stage") diag.add(where_of(file, key.source()), "unknown top-level key '" + k + "' (known: run, stage)");
    }
    const toml::table* run = root["run"].as_table();
    if (!run) diag.add(file, "missing [run] table");
    Section rs = validate_section(run, file, "[run]", kRunOptions, std::size(kRunOptions), diag, {"distributed"});
    {
        read(rs, "name", rc.name);
        read(rs, "output_dir", rc.output_dir);
        read(rs, "seed", rc.seed);
        read(rs, "threads", rc.threads);
        read(rs, "device", rc.device);
        read(rs, "precision", rc.precision);
        read(rs, "cuda_graphs", rc.cuda_graphs);
        if (rs.has("seed") && rs.get_int("seed") < 0) diag.add(rs.where_of("seed"), "seed must be at least 0");
        if (rc.threads < 0)
            diag.add(rs.where_of("threads"), "threads must be at least 0 (0 = LibTorch's default), not " +
                                                 std::to_string(rc.threads));
        if (rc.precision != "fp32" && rc.precision != "bf16")
            diag.add(rs.where_of("precision"), "precision must be fp32 or bf16, not '" + rc.precision + "'");
        if (rc.device != "cpu" && rc.device != "cuda" && rc.device != "auto")
            diag.add(rs.where_of("device"), "device must be cpu, cuda or auto, not '" + rc.device + "'");
    }
    if (run && run->contains("distributed")) {
        const toml::table* dt = (*run)["distributed"].as_table();
        if (!dt) diag.add(where_of(file, *run->get("distributed")), "[run] distributed must be a table: [run.distributed]");
        Section ds = check(dt, file, "[run.distributed]", kDistributedOptions, diag);
        DistributedConfig& d = rc.distributed;
        read(ds, "backend", d.backend);
        read(ds, "timeout_s", d.timeout_s);
        read(ds, "bucket_mb", d.bucket_mb);
        read(ds, "zero_stage", d.zero_stage);
        if (d.zero_stage == 2 || d.zero_stage == 3)
            diag.add(ds.where_of("zero_stage"), "zero_stage " + std::to_string(d.zero_stage) +
                                                    " (sharded gradients / parameters) is not built yet: use 0 or 1");
        else if (d.zero_stage != 0 && d.zero_stage != 1)
            diag.add(ds.where_of("zero_stage"), "zero_stage must be 0 or 1, not " + std::to_string(d.zero_stage));
        if (d.backend != "auto" && d.backend != "nccl" && d.backend != "gloo")
            diag.add(ds.where_of("backend"), "backend must be auto, nccl or gloo, not '" + d.backend + "'");
        if (d.backend == "nccl" && rc.device == "cpu")
            diag.add(ds.where_of("backend"), "backend = \"nccl\" needs [run] device = \"cuda\" (NCCL reduces GPU tensors); "
                                             "on a CPU use gloo");
        if (!(d.timeout_s > 0 && d.timeout_s <= 86400))
            diag.add(ds.where_of("timeout_s"), "timeout_s must be in (0, 86400] seconds");
        if (!(d.bucket_mb > 0 && d.bucket_mb <= 4096)) diag.add(ds.where_of("bucket_mb"), "bucket_mb must be in (0, 4096]");
    }

    const toml::array* stages = root["stage"].as_array();
    if (!stages || stages->empty()) diag.add(file, "no [[stage]] tables: a run needs at least one stage");
    std::set<std::string> seen;
    if (stages) {
        for (size_t i = 0; i < stages->size(); ++i) {
            const toml::table* st = (*stages)[i].as_table();
            if (!st) continue;
            StageConfig sc;
            sc.where = where_of(file, *st);
            const std::string label = "[[stage]] #" + std::to_string(i + 1);
            static const std::set<std::string> subtables = {"model", "param", "objective", "data", "train",
                                                            "eval", "grader", "generation"};
            Section ss = validate_section(st, file, label, kStageOptions, std::size(kStageOptions), diag, subtables);
            if (ss.has("name")) {  // else reported as missing
                read(ss, "name", sc.name);
                read(ss, "init_from", sc.init_from);
                read(ss, "teacher", sc.teacher);
                sc.init_from_where = ss.where_of("init_from");
                sc.teacher_where = ss.where_of("teacher");
                read(ss, "tokenizer", sc.tokenizer);
                if (!sc.tokenizer.empty()) {
                    const std::filesystem::path t(sc.tokenizer);
                    if (!sc.init_from.empty())
                        diag.add(ss.where_of("tokenizer"), "tokenizer: a stage with init_from reads the tokenizer saved "
                                                           "with that model; remove tokenizer");
                    else if (!std::filesystem::exists(t / "tokenizer.json") && !std::filesystem::exists(t / "tokenizer.model") &&
                             !std::filesystem::exists(t / "spiece.model"))
                        diag.add(ss.where_of("tokenizer"), "tokenizer '" + sc.tokenizer +
                                                               "' has no tokenizer.json, tokenizer.model or spiece.model");
                }
                for (const char* key : {"init_from", "teacher"}) {
                    const std::string& ref = std::string(key) == "init_from" ? sc.init_from : sc.teacher;
                    if (ref.empty()) continue;
                    if (is_stage_path(ref)) {
                        if (!std::filesystem::exists(std::filesystem::path(ref) / "stage.json") && !is_hf_checkpoint(ref))
                            diag.add(ss.where_of(key), std::string(key) + " '" + ref +
                                                           "' has neither stage.json nor config.json + *.safetensors: "
                                                           "it must be a stage's final/ directory (run that stage "
                                                           "first) or a Hugging Face checkpoint directory");
                        else if (!std::filesystem::exists(std::filesystem::path(ref) / "stage.json") &&
                                 !std::filesystem::exists(std::filesystem::path(ref) / "tokenizer.json") &&
                                 !std::filesystem::exists(std::filesystem::path(ref) / "tokenizer.model") &&
                                 !std::filesystem::exists(std::filesystem::path(ref) / "spiece.model"))
                            diag.add(ss.where_of(key), std::string(key) + " '" + ref +
                                                           "' is a Hugging Face checkpoint without its tokenizer "
                                                           "(tokenizer.json, tokenizer.model or spiece.model, with "
                                                           "tokenizer_config.json): copy those files next to its weights");
                    } else if (!seen.count(ref)) {
                        diag.add(ss.where_of(key), std::string(key) + " '" + ref +
                                                       "' is not an earlier stage (or a final/ directory path)");
                    }
                }
                if (!seen.insert(sc.name).second) diag.add(sc.where, "duplicate stage name '" + sc.name + "'");
            }
            const std::string p = "stage '" + sc.name + "'";
            if (sc.init_from.empty() || is_stage_path(sc.init_from)) {
                // A path's model is described by its stage.json; [stage.model] is not used.
                if (is_stage_path(sc.init_from)) {
                    if (st->contains("model"))
                        diag.add(where_of(file, *st->get("model")),
                                 p + ": a stage with init_from continues that model; remove [stage.model]");
                } else {
                    sc.model = plugin_section((*st)["model"].as_table(), FT_KIND_MODEL, file, p + " model", reg, diag, sc.where);
                }
            } else if (st->contains("model")) {
                diag.add(where_of(file, *st->get("model")),
                         p + ": a stage with init_from continues the earlier stage's model; remove [stage.model]");
            } else {
                for (const auto& earlier : rc.stages)
                    if (earlier.name == sc.init_from) sc.model = earlier.model;
            }
            sc.param = plugin_section((*st)["param"].as_table(), FT_KIND_PARAM, file, p + " param", reg, diag, sc.where);
            sc.objective =
                plugin_section((*st)["objective"].as_table(), FT_KIND_OBJECTIVE, file, p + " objective", reg, diag, sc.where);
            if (const auto* g = (*st)["grader"].as_array()) {
                for (const auto& el : *g)
                    sc.graders.push_back(plugin_section(el.as_table(), FT_KIND_GRADER, file, p + " grader", reg, diag, sc.where));
            } else if (st->contains("grader")) {
                diag.add(where_of(file, *st->get("grader")), p + ": grader must be an array of tables ([[stage.grader]])");
            }

            const toml::table* dt = (*st)["data"].as_table();
            if (!dt) diag.add(sc.where, p + ": missing [stage.data] table");
            Section ds = check(dt, file, p + " data", kDataOptions, diag);
            {
                read(ds, "train", sc.data.train_file);
                read(ds, "eval", sc.data.eval_file);
                sc.data.train_where = ds.where_of("train");
                sc.data.eval_where = ds.where_of("eval");
                read(ds, "eval_fraction", sc.data.eval_fraction);
                read(ds, "max_seq_len", sc.data.max_seq_len);
                read(ds, "packing", sc.data.packing);
                read(ds, "skip_malformed", sc.data.skip_malformed);
                read(ds, "shuffle", sc.data.shuffle);
                read(ds, "chat_template", sc.data.chat_template);
                read(ds, "span_corruption", sc.data.span_corruption);
                read(ds, "noise_density", sc.data.noise_density);
                read(ds, "mean_noise_span_length", sc.data.mean_noise_span_length);
                sc.data.span_corruption_where = ds.where_of("span_corruption");
                if (!sc.data.chat_template.empty()) {
                    try {
                        if (chat_template_from_name(sc.data.chat_template) != ChatTemplate::chatml && sc.init_from.empty() &&
                            sc.tokenizer.empty())
                            throw Error("chat_template '" + sc.data.chat_template + "': this stage builds a fresh "
                                        "model with fthost's byte-level tokenizer (no init_from), whose only "
                                        "template is chatml");
                    } catch (const Error& e) {
                        diag.add(ds.where_of("chat_template"), e.what());
                    }
                }
                if (sc.data.eval_fraction < 0 || sc.data.eval_fraction >= 1)
                    diag.add(ds.where_of("eval_fraction"), "eval_fraction must be in [0, 1)");
                if (sc.data.max_seq_len < 2) diag.add(ds.where_of("max_seq_len"), "max_seq_len must be at least 2");
                if (!(sc.data.noise_density > 0 && sc.data.noise_density < 1))
                    diag.add(ds.where_of("noise_density"), "noise_density must be in (0, 1)");
                if (!(sc.data.mean_noise_span_length >= 1))
                    diag.add(ds.where_of("mean_noise_span_length"), "mean_noise_span_length must be at least 1");
                if (!sc.data.span_corruption)
                    for (const char* k : {"noise_density", "mean_noise_span_length"})
                        if (dt && dt->contains(k))
                            diag.add(ds.where_of(k), std::string(k) + " is a span_corruption setting; set span_corruption = true "
                                                                    "or remove it");
                // A tokenizer directory known now (the stage's tokenizer, or init_from's) must have
                // the sentinels; another stage's model, and the byte tokenizer, are checked when
                // the stage starts.
                const std::string tokenizer_dir = !sc.tokenizer.empty()         ? sc.tokenizer
                                                  : is_stage_path(sc.init_from) ? sc.init_from
                                                                                : std::string();
                if (sc.data.span_corruption && !tokenizer_dir.empty()) {
                    try {
                        const auto codec = TextCodec::for_model(tokenizer_dir, sc.data.chat_template);
                        if (!codec->token_to_id("<extra_id_0>"))
                            diag.add(ds.where_of("span_corruption"),
                                     "span_corruption: the tokenizer in '" + tokenizer_dir + "' (" + codec->describe() +
                                         ") has no sentinel tokens <extra_id_0>, <extra_id_1>, ... (T5's extra_ids)");
                    } catch (const std::exception&) {
                        // reported with init_from / tokenizer, or when the stage starts
                    }
                }
            }
            Section ts = check((*st)["train"].as_table(), file, p + " train", kTrainOptions, diag);
            {
                auto& t = sc.train;
                read(ts, "steps", t.steps);
                read(ts, "epochs", t.epochs);
                read(ts, "batch_size", t.batch_size);
                read(ts, "grad_accum", t.grad_accum);
                read(ts, "lr", t.lr);
                read(ts, "min_lr_ratio", t.min_lr_ratio);
                read(ts, "warmup_steps", t.warmup_steps);
                read(ts, "weight_decay", t.weight_decay);
                read(ts, "max_grad_norm", t.max_grad_norm);
                read(ts, "adam_beta1", t.beta1);
                read(ts, "adam_beta2", t.beta2);
                read(ts, "adam_eps", t.eps);
                read(ts, "log_every", t.log_every);
                read(ts, "eval_every", t.eval_every);
                read(ts, "checkpoint_every", t.checkpoint_every);
                read(ts, "keep_checkpoints", t.keep_checkpoints);
                read(ts, "early_stopping_patience", t.early_stopping_patience);
                read(ts, "precompute_ref_log_probs", t.precompute_ref_log_probs);
                read(ts, "disable_dropout", t.disable_dropout);
                read(ts, "activation_checkpointing", t.activation_checkpointing);
                read(ts, "on_nonfinite", t.on_nonfinite);
                read(ts, "max_nonfinite_skips", t.max_nonfinite_skips);
                if (t.on_nonfinite != "stop" && t.on_nonfinite != "skip")
                    diag.add(ts.where_of("on_nonfinite"), "on_nonfinite must be \"stop\" or \"skip\", not \"" + t.on_nonfinite + "\"");
                if (ts.has("steps") && ts.has("epochs") && t.steps <= 0 && t.epochs <= 0) diag.add(ts.section_where, p + " train: set steps or epochs (> 0)");
                if (t.batch_size < 1) diag.add(ts.where_of("batch_size"), "batch_size must be at least 1");
                if (t.grad_accum < 1) diag.add(ts.where_of("grad_accum"), "grad_accum must be at least 1");
                if (t.lr <= 0) diag.add(ts.where_of("lr"), "lr must be positive");
                if (t.min_lr_ratio < 0 || t.min_lr_ratio > 1) diag.add(ts.where_of("min_lr_ratio"), "min_lr_ratio must be in [0, 1]");
                if (t.log_every < 1) diag.add(ts.where_of("log_every"), "log_every must be at least 1");
                if (t.keep_checkpoints < 1) diag.add(ts.where_of("keep_checkpoints"), "keep_checkpoints must be at least 1");
                for (const auto& [key, v] : {std::pair<const char*, int64_t>{"steps", t.steps}, {"epochs", t.epochs},
                                             {"warmup_steps", t.warmup_steps}, {"eval_every", t.eval_every},
                                             {"checkpoint_every", t.checkpoint_every},
                                             {"early_stopping_patience", t.early_stopping_patience},
                                             {"max_nonfinite_skips", t.max_nonfinite_skips}})
                    if (v < 0) diag.add(ts.where_of(key), std::string(key) + " must be at least 0, not " + std::to_string(v));
                if (!(t.weight_decay >= 0)) diag.add(ts.where_of("weight_decay"), "weight_decay must be at least 0");
                if (!(t.max_grad_norm >= 0)) diag.add(ts.where_of("max_grad_norm"), "max_grad_norm must be at least 0 (0 = off)");
                if (!(t.beta1 >= 0 && t.beta1 < 1)) diag.add(ts.where_of("adam_beta1"), "adam_beta1 must be in [0, 1)");
                if (!(t.beta2 >= 0 && t.beta2 < 1)) diag.add(ts.where_of("adam_beta2"), "adam_beta2 must be in [0, 1)");
                if (!(t.eps > 0)) diag.add(ts.where_of("adam_eps"), "adam_eps must be positive");
                if (t.early_stopping_patience > 0 && t.eval_every <= 0)
                    diag.add(ts.where_of("early_stopping_patience"), "early stopping needs eval_every > 0");
            }
            Section gs = check((*st)["generation"].as_table(), file, p + " generation", kGenerationOptions, diag);
            {
                auto& g = sc.generation;
                read(gs, "num_generations", g.num_generations);
                read(gs, "max_new_tokens", g.max_new_tokens);
                read(gs, "temperature", g.temperature);
                read(gs, "top_k", g.top_k);
                read(gs, "top_p", g.top_p);
                read(gs, "num_iterations", g.num_iterations);
                read(gs, "mask_truncated_completions", g.mask_truncated_completions);
                if (g.num_generations < 2) diag.add(gs.where_of("num_generations"), "num_generations must be at least 2 (advantages compare a group)");
                if (g.max_new_tokens < 1) diag.add(gs.where_of("max_new_tokens"), "max_new_tokens must be at least 1");
                if (g.temperature <= 0) diag.add(gs.where_of("temperature"), "temperature must be > 0 for sampling");
                if (g.top_p <= 0 || g.top_p > 1) diag.add(gs.where_of("top_p"), "top_p must be in (0, 1]");
                if (g.num_iterations < 1) diag.add(gs.where_of("num_iterations"), "num_iterations must be at least 1");
                if (g.top_k < 0) diag.add(gs.where_of("top_k"), "top_k must be at least 0 (0 = off)");
            }
            // What the model reads rules out some settings (a fresh model's; one loaded from
            // init_from is checked when the stage starts).
            if (sc.model.loaded && sc.init_from.empty()) {
                const auto* mvt = static_cast<const ft_model_vtable*>(sc.model.loaded->desc->vtable);
                const ft_data_shape shape =
                    sc.objective.loaded
                        ? objective_traits(static_cast<const ft_objective_vtable*>(sc.objective.loaded->desc->vtable)).data_shape
                        : FT_DATA_SEQUENCES;
                for (const auto& c : input_conflicts(sc.model.plugin, model_traits(mvt), mvt->lm_head != nullptr, sc, shape))
                    diag.add(c.key == "packing" || c.key == "span_corruption" ? ds.where_of(c.key) : sc.where,
                             p + ": " + c.message);
            }
            // What the objective needs from the stage.
            if (sc.objective.loaded) {
                const ObjectiveTraits ot =
                    objective_traits(static_cast<const ft_objective_vtable*>(sc.objective.loaded->desc->vtable));
                const std::string obj = "objective '" + sc.objective.plugin + "'";
                if ((ot.needs & FT_NEEDS_TEACHER) && sc.teacher.empty())
                    diag.add(sc.where, p + ": " + obj + " needs a teacher: set `teacher = \"<stage or final/ dir>\"`");
                if (!(ot.needs & FT_NEEDS_TEACHER) && !sc.teacher.empty())
                    diag.add(ss.where_of("teacher"), p + ": " + obj + " does not use a teacher; remove `teacher`");
                if (ot.data_shape != FT_DATA_SEQUENCES && sc.data.span_corruption)
                    diag.add(ds.where_of("span_corruption"),
                             p + ": " + obj + " trains on pairs, feedback or sampled completions; span_corruption makes "
                                              "single source/target sequences (use cpt or sft)");
                if (ot.data_shape != FT_DATA_SEQUENCES && sc.data.packing)
                    diag.add(ds.where_of("packing"), p + ": " + obj +
                                                         " trains on pairs / feedback rows, which are not packed; "
                                                         "set packing = false");
                if (sc.train.precompute_ref_log_probs && !(ot.needs & FT_NEEDS_REFERENCE))
                    diag.add(ts.where_of("precompute_ref_log_probs"), p + ": " + obj + " has no reference model");
                if (ot.data_shape == FT_DATA_COMPLETIONS) {
                    if (sc.train.precompute_ref_log_probs)
                        diag.add(ts.where_of("precompute_ref_log_probs"),
                                 p + ": " + obj + " trains on completions sampled during training; they cannot be precomputed");
                    if (sc.graders.empty())
                        diag.add(sc.where, p + ": " + obj + " needs at least one [[stage.grader]] to score its completions");
                    const int64_t rows = sc.train.batch_size * sc.train.grad_accum;
                    if (sc.generation.num_generations >= 2 && rows % sc.generation.num_generations != 0)
                        diag.add(ts.where_of("batch_size"),
                                 p + ": batch_size x grad_accum (" + std::to_string(rows) +
                                     " completions per step) must be a multiple of [stage.generation] num_generations (" +
                                     std::to_string(sc.generation.num_generations) + ")");
                } else if (st->contains("generation")) {
                    diag.add(where_of(file, *st->get("generation")),
                             p + ": [stage.generation] is for objectives that sample completions (grpo, rft), not " + obj);
                }
            }
            Section es = check((*st)["eval"].as_table(), file, p + " eval", kEvalOptions, diag);
            {
                read(es, "max_new_tokens", sc.eval.max_new_tokens);
                read(es, "batch_size", sc.eval.batch_size);
                read(es, "max_examples", sc.eval.max_examples);
                read(es, "base", sc.eval.base);
                read(es, "group_by", sc.eval.group_by);
                if (sc.eval.max_new_tokens < 1) diag.add(es.where_of("max_new_tokens"), "max_new_tokens must be at least 1");
                if (sc.eval.batch_size < 1) diag.add(es.where_of("batch_size"), "batch_size must be at least 1");
                if (sc.eval.max_examples < 0) diag.add(es.where_of("max_examples"), "max_examples must be at least 0 (0 = all)");
            }
            sc.cuda_graphs = rc.cuda_graphs;
            sc.bf16 = rc.precision == "bf16";
            rc.stages.push_back(std::move(sc));
        }
    }
    return rc;
}

RunConfig load_run_config(const std::string& file, const std::vector<std::string>& sets, const PluginRegistry& reg,
                          Diagnostics& diag) {
    std::ifstream in(file);
    if (!in) {
        diag.add(file, "cannot read config file");
        return {};
    }
    std::stringstream buf;
    buf << in.rdbuf();
    toml::table root;
    try {
        root = toml::parse(buf.str(), file);
    } catch (const toml::parse_error& e) {
        const auto& b = e.source().begin;
        diag.add(file + ":" + std::to_string(b.line) + ":" + std::to_string(b.column), std::string(e.description()));
        return {};
    }
    for (const auto& s : sets) apply_set(root, s, diag);
    return build(root, file, reg, diag);
}

// ---- what `fthost validate` opens -----------------------------------------------------

namespace {

// The first non-blank line of a JSONL file parses as a JSON object, or an error "file:line: why".
std::string first_row_problem(const std::string& file) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return file + ": no such file";
    if (std::filesystem::is_directory(file, ec)) return file + ": is a directory, not a JSONL file";
    std::ifstream in(file);
    if (!in) return file + ": cannot open data file (" + std::strerror(errno) + ")";
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        try {
            if (!nlohmann::json::parse(line).is_object()) return file + ":" + std::to_string(n) + ": a line must be a JSON object";
        } catch (const nlohmann::json::exception& e) {
            return file + ":" + std::to_string(n) + ": malformed JSON (" + utf8_lossy(e.what()) + ")";
        }
        return "";
    }
    if (in.bad()) return file + ": cannot read data file";
    return file + ": has no rows";
}

// A final/ or Hugging Face directory's JSON files parse and its weights' headers read.
void check_model_dir(const std::filesystem::path& dir, const std::string& where, const std::string& key,
                     Diagnostics& diag) {
    for (const char* name : {"stage.json", "config.json", "model.safetensors.index.json", "adapter_config.json"}) {
        const auto f = dir / name;
        if (!std::filesystem::exists(f)) continue;
        try {
            read_json_file(f);
        } catch (const std::exception& e) {
            diag.add(where, key + ": " + utf8_lossy(e.what()));
        }
    }
    std::error_code ec;
    std::vector<std::filesystem::path> weights;
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
        if (it->path().extension() == ".safetensors") weights.push_back(it->path());
    if (ec) diag.add(where, key + ": cannot list " + dir.string() + " (" + ec.message() + ")");
    std::sort(weights.begin(), weights.end());
    for (const auto& w : weights) {
        try {
            check_safetensors_header(w.string());
        } catch (const std::exception& e) {
            diag.add(where, key + ": " + utf8_lossy(e.what()));
        }
    }
}

}  // namespace

void check_inputs(const RunConfig& rc, Diagnostics& diag) {
    std::set<std::string> seen;  // a file or directory used by several stages is reported once
    for (const auto& sc : rc.stages) {
        for (const auto& [file, where, key] : {std::tuple{sc.data.train_file, sc.data.train_where, "train"},
                                               std::tuple{sc.data.eval_file, sc.data.eval_where, "eval"}}) {
            if (file.empty() || !seen.insert(file).second) continue;
            if (sc.data.skip_malformed) {
                // Malformed rows are skipped by request: only that the file opens is checked.
                std::ifstream in(file);
                if (!in) diag.add(where, std::string("data ") + key + " '" + file + "' cannot be read");
                continue;
            }
            const std::string problem = first_row_problem(file);
            if (!problem.empty()) diag.add(where, std::string("data ") + key + ": " + problem);
        }
        for (const auto& [ref, where, key] : {std::tuple{sc.init_from, sc.init_from_where, "init_from"},
                                              std::tuple{sc.teacher, sc.teacher_where, "teacher"}}) {
            // A missing directory is reported by load_run_config; an earlier stage's model does not exist yet.
            if (!is_stage_path(ref) || !std::filesystem::is_directory(ref) || !seen.insert(ref).second) continue;
            check_model_dir(ref, where, key, diag);
        }
    }
}

}  // namespace fthost::host
