// One [[stage]], read top to bottom as torchtune's recipes are: setup_stage builds what
// the stage trains with, start_or_resume puts it at its first step, train_loop runs the
// optimisation, finish_stage evaluates and writes final/.
#include "train/stage_trainer.hpp"
#include "train/stop_signal.hpp"

#include "data/batch_stream.hpp"
#include "distributed/communicator.hpp"
#include "distributed/gradient_reducer.hpp"
#include "data/dataset.hpp"
#include "eval/held_out.hpp"
#include "io/atomic_file.hpp"
#include "model/stage_inputs.hpp"
#include "config/host_api.hpp"
#include "train/adamw.hpp"
#include "train/checkpoint.hpp"
#include "train/objective_call.hpp"
#include "train/optimizer_shards.hpp"
#include "train/process_memory.hpp"
#include "train/reference_model.hpp"
#include "train/reward_ledger.hpp"
#include "train/rollout.hpp"

#include <fthost/torch.hpp>

#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

using Clock = std::chrono::steady_clock;

// Everything a stage trains with, built once by setup_stage.
struct Stage {
    const RunConfig& rc;
    const StageConfig& sc;
    size_t index;
    RunDir& dir;
    at::Device device;
    Communicator& comm;  // the run's ranks: each trains its shard of every step; rank 0 writes
    int stop_signal = 0;  // the signal another rank received, when the ranks stopped on it
    fs::path base_dir;  // the stage's starting point on disk (init_from), or empty
    std::unique_ptr<ModelSession> model, teacher;
    StageInputs inputs;
    std::unique_ptr<ObjectiveCall> objective;
    ft_data_shape shape = FT_DATA_SEQUENCES;
    Datasets data;
    std::unique_ptr<ReferenceModel> reference;
    bool no_dropout = false, on_policy = false;
    TensorList trainable;
    std::unique_ptr<AdamW> optimizer;
    std::unique_ptr<GradientReducer> reducer;  // distributed: the gradient all-reduce, overlapped with backward
    std::vector<int> owners;  // ZeRO-1: the rank keeping each trainable parameter's moments (empty: every rank)
    std::unique_ptr<BatchStream> stream;
    int64_t total_steps = 0;
    TrainerState state;
    // Training time: what earlier attempts of this stage ran (resume) and when this one began.
    double seconds_before = 0;
    Clock::time_point loop_start;
    double seconds() const { return seconds_before + std::chrono::duration<double>(Clock::now() - loop_start).count(); }

    const TextCodec* codec() const { return inputs.codec.get(); }
    std::map<std::string, double> scores(ModelSession& m) {
        return held_out_scores(m, data.eval, sc, codec(), shape, device, &comm);
    }
};

// The model a stage starts from: fresh from its plugin, or an earlier stage's result
// (or a checkpoint directory) with its adapter merged.
std::unique_ptr<ModelSession> starting_model(Stage& s, const PluginRegistry& registry) {
    const StageConfig& sc = s.sc;
    if (!sc.init_from.empty()) {
        s.base_dir = is_stage_path(sc.init_from) ? fs::path(sc.init_from) : s.dir.final_dir(sc.init_from);
        // Stored dtypes: a frozen bf16 base stays bf16; what trains gets its precision
        // from the parameterisation (full: float32 masters).
        // A parameterisation that takes its base in host memory (qlora) gets the sites'
        // weights there, and the device only what it keeps of them.
        return ModelSession::from_stage_dir(s.base_dir, registry, s.device, true, WeightDtypes::as_stored,
                                            takes_base_on_host(sc.param) ? BasePlacement::sites_on_host
                                                                         : BasePlacement::on_device);
    }
    PluginSection m = sc.model;
    // A text model's vocabulary is its tokenizer's unless the config sets it.
    const bool text = model_traits(static_cast<const ft_model_vtable*>(m.loaded->desc->vtable)).inputs & FT_INPUT_TEXT;
    if (text && m.config.has("vocab_size") && m.config.where_of("vocab_size").find("(default)") != std::string::npos)
        m.config.values["vocab_size"] = int64_t{
            sc.tokenizer.empty() ? TextCodec::bytes()->vocab_size()
                                 : TextCodec::for_model(sc.tokenizer, sc.data.chat_template)->vocab_size()};
    return std::make_unique<ModelSession>(m, registry, s.device);
}

// The teacher of a distillation stage: frozen, in this process, with the student's vocabulary.
std::unique_ptr<ModelSession> load_teacher(const Stage& s, const PluginRegistry& registry) {
    const fs::path tdir = is_stage_path(s.sc.teacher) ? fs::path(s.sc.teacher) : s.dir.final_dir(s.sc.teacher);
    auto teacher = ModelSession::from_stage_dir(tdir, registry, s.device, true, WeightDtypes::as_stored);
    teacher->freeze();
    if (teacher->vocab_size() != s.model->vocab_size())
        throw Error("stage '" + s.sc.name + "': the teacher (" + tdir.string() + ") has vocab_size " +
                        std::to_string(teacher->vocab_size()) + ", the student " + std::to_string(s.model->vocab_size()) +
                        "; distillation compares token distributions and needs the same vocabulary",
                    FT_ERR_CONFIG);
    return teacher;
}

// Model, inputs, objective, data, teacher, parameterisation, reference, optimizer, stream.
void setup_stage(Stage& s, const PluginRegistry& registry) {
    const StageConfig& sc = s.sc;
    at::manual_seed(s.rc.seed + 1000003ull * s.index);
    set_host_seed(s.rc.seed + s.index);
    s.model = starting_model(s, registry);
    // Rows -> inputs as the model reads them: text with the tokenizer that came with the
    // starting model (else the byte tokenizer), its own fields through encode_row.
    // A fresh model reads text with the stage's tokenizer; a continued one with its own.
    s.inputs = stage_inputs(*s.model, s.base_dir.empty() ? fs::path(sc.tokenizer) : s.base_dir, sc.data.chat_template);
    s.objective = std::make_unique<ObjectiveCall>(sc.objective, *s.model);
    s.objective->set_bf16(s.rc.precision == "bf16");
    s.shape = s.objective->traits().data_shape;
    check_stage_inputs(*s.model, s.inputs, sc, s.shape);
    s.data = load_datasets(sc.data, s.inputs.reader, s.objective->policy(), s.rc.seed, s.shape, sc.train.batch_size);
    if (s.data.train_stats.skipped + s.data.eval_stats.skipped > 0)
        std::cerr << "fthost: stage '" << sc.name << "': skipped " << s.data.train_stats.skipped + s.data.eval_stats.skipped
                  << " malformed lines\n";
    s.objective->on_dataset(s.data.train);
    const uint32_t needs = s.objective->traits().needs;
    if (needs & FT_NEEDS_TEACHER) {
        s.teacher = load_teacher(s, registry);
        s.objective->set_teacher(s.teacher.get());
    }

    s.model->apply_param(sc.param);
    s.model->set_activation_checkpointing(sc.train.activation_checkpointing);
    release_free_memory();  // what loading and the parameterisation freed (qlora: the fp32 base)
    if (s.base_dir.empty() && !s.model->is_full() && s.model->base_weights_released())
        throw Error("stage '" + sc.name + "': [stage.param] plugin '" + sc.param.plugin +
                        "' replaces the base weights by another form (4-bit) and frees them, so the stage's "
                        "adapter needs a saved base: set init_from to an earlier stage or a final/ directory",
                    FT_ERR_CONFIG);
    // The reference is the model as the stage starts: adapters off, or a frozen copy.
    if (needs & FT_NEEDS_REFERENCE) {
        s.reference = std::make_unique<ReferenceModel>(*s.model);
        if (sc.train.precompute_ref_log_probs)
            s.reference->precompute({&s.data.train, &s.data.eval}, s.shape, sc.train.batch_size, sc.bf16);
        s.objective->set_reference(s.reference.get());
    }
    // Preference and distillation stages train without dropout unless asked (TRL's
    // disable_dropout): the policy must match the reference when nothing has changed.
    s.no_dropout = sc.train.disable_dropout &&
                   (s.shape != FT_DATA_SEQUENCES || (needs & (FT_NEEDS_REFERENCE | FT_NEEDS_TEACHER)));
    s.trainable = s.model->trainable_parameters();
    std::vector<bool> owned;  // ZeRO-1: the parameters whose moments this rank keeps
    if (s.comm.connected() && s.rc.distributed.zero_stage == 1) {
        s.owners = assign_owners(s.trainable, s.comm.size());
        for (int owner : s.owners) owned.push_back(owner == s.comm.rank());
    }
    s.optimizer = std::make_unique<AdamW>(
        s.trainable, AdamWOptions{sc.train.beta1, sc.train.beta2, sc.train.eps, sc.train.weight_decay}, owned);
    // On-policy stages draw prompts: one step's completions come from
    // batch_size x grad_accum / num_generations of them, reused for num_iterations steps.
    s.on_policy = s.shape == FT_DATA_COMPLETIONS;
    const int64_t prompts_per_step = sc.train.batch_size * sc.train.grad_accum / sc.generation.num_generations;
    s.stream = std::make_unique<BatchStream>(s.data.train, s.on_policy ? prompts_per_step : sc.train.batch_size,
                                             sc.data.max_seq_len, sc.data.packing, sc.data.shuffle, s.rc.seed + s.index,
                                             s.shape);
    const int64_t per_epoch = s.stream->batches_per_epoch();
    const int64_t per_step = sc.train.grad_accum * s.comm.size();  // micro-batches of one step, over all ranks
    s.objective->set_auxiliary_weight(1.0 / static_cast<double>(per_step));
    s.total_steps = sc.train.steps > 0 ? sc.train.steps
                    : s.on_policy ? sc.train.epochs * ((per_epoch + s.comm.size() - 1) / s.comm.size()) *
                                        sc.generation.num_iterations
                                       : sc.train.epochs * ((per_epoch + per_step - 1) / per_step);
    if (s.comm.connected()) {
        // Every rank starts from rank 0's trainable weights (they are equal by seeding; this makes sure).
        std::vector<at::Tensor> params;
        for (const auto& [name, p] : s.trainable) params.push_back(p);
        s.comm.set_context("stage '" + sc.name + "' setup");
        s.comm.broadcast(params, 0, "parameter broadcast");
        s.reducer = std::make_unique<GradientReducer>(s.comm, params, s.rc.distributed.bucket_mb);
    }
}

// Resumes from the stage's latest checkpoint (with --resume), or starts afresh: earlier
// checkpoints and metrics of the stage are dropped and the starting model is scored.
void start_or_resume(Stage& s, const StageOptions& opts) {
    s.comm.set_context("stage '" + s.sc.name + "' start");
    if (opts.resume) {
        if (s.comm.leader()) remove_partial_checkpoints(s.dir.checkpoints_dir(s.sc.name));
        s.comm.barrier("resume barrier");  // every rank reads the checkpoint rank 0 left whole
        if (auto ckpt = latest_checkpoint(s.dir.checkpoints_dir(s.sc.name))) {
            s.state = load_checkpoint(*ckpt, s.trainable, *s.optimizer);
            s.stream->seek(s.state.data);
            s.dir.truncate_metrics(s.state.metrics_size);
            if (!opts.quiet) std::cerr << "fthost: stage '" << s.sc.name << "' resumes from " << ckpt->string() << "\n";
            return;
        }
        if (s.comm.leader())
            std::cerr << "fthost: stage '" << s.sc.name << "' has no checkpoint to resume from: it starts again from step 1"
                      << (s.sc.train.checkpoint_every > 0 ? "" : " ([stage.train] checkpoint_every = 0 writes none)") << "\n";
    }
    if (s.comm.leader()) fs::remove_all(s.dir.checkpoints_dir(s.sc.name));
    s.dir.drop_metrics_of(s.sc.name);
    if (s.sc.eval.base) {
        // The starting model's held-out loss too, so a stage without graders (pre-training)
        // reports where it started.
        const nlohmann::json ev = eval_objective(*s.model, *s.objective, s.data.eval, s.sc, s.device, &s.comm);
        if (ev.contains("loss")) s.state.base_eval["loss"] = ev["loss"];
        for (const auto& [k, v] : s.scores(*s.model)) s.state.base_eval[k] = v;
    }
}

std::string format_duration(double s) {
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else std::snprintf(buf, sizeof buf, "%.0fs", s);
    return buf;
}

// The progress line on stderr: rewritten in place on a terminal, one line per log otherwise.
class Progress {
public:
    Progress(const Stage& s, const StageOptions& opts)
        : s_(s), quiet_(opts.quiet), tty_(::isatty(2) && !opts.quiet), first_step_(s.state.step), start_(Clock::now()) {}
    void print(double loss, double lr, double tps) const {
        if (quiet_) return;
        const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
        const int64_t done = s_.state.step - first_step_;  // steps run by this process
        const double eta =
            done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(s_.total_steps - s_.state.step) : 0;
        char buf[256];
        std::snprintf(buf, sizeof buf, "[%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  eta %s", s_.sc.name.c_str(),
                      static_cast<long long>(s_.state.step), static_cast<long long>(s_.total_steps), loss, lr, tps,
                      format_duration(eta).c_str());
        if (tty_) std::cerr << "\r" << buf << "\033[K" << std::flush;
        else std::cerr << buf << "\n";
    }
    void end() const {
        if (tty_) std::cerr << "\n";
    }

private:
    const Stage& s_;
    bool quiet_, tty_;
    int64_t first_step_;
    Clock::time_point start_;
};

// One optimizer step's accumulation micro-batches and their effective-batch totals.
struct StepBatches {
    std::vector<HostBatch> micro;  // this rank's
    std::vector<int64_t> index;    // each one's place among the step's micro-batches of all ranks
    int64_t global_micro = 0;      // the step's micro-batches over all ranks
    // Totals of the whole step (every rank's micro-batches): losses are normalised by them.
    int64_t num_items = 0, num_examples = 0, num_tokens = 0;
};

// The next step's micro-batches: from the data stream, or — on-policy — from a rollout
// sampled every num_iterations steps.
class StepSource {
public:
    explicit StepSource(Stage& s) : s_(s) {}
    StepBatches next() {
        StepBatches out;
        if (!s_.on_policy) {
            // Every rank walks the whole step's share of the seeded order, so totals and the
            // stream's position are global; rank r trains micro-batches [r*A, (r+1)*A).
            const int64_t accum = s_.sc.train.grad_accum;
            out.global_micro = accum * s_.comm.size();
            for (int64_t g = 0; g < out.global_micro; ++g) {
                HostBatch b = s_.stream->next();
                out.num_items += b.num_labels;
                out.num_examples += b.num_examples;
                out.num_tokens += b.num_tokens;
                if (g / accum != s_.comm.rank()) continue;
                out.micro.push_back(to_device(std::move(b), s_.device));
                out.index.push_back(g);
            }
            return out;
        }
        if (!rollout_ || uses_ == s_.sc.generation.num_iterations) {
            // Every rank draws the step's prompt batches in the global order and samples
            // its own: rank r the r-th.
            HostBatch mine;
            for (int r = 0; r < s_.comm.size(); ++r) {
                HostBatch b = s_.stream->next();
                if (r == s_.comm.rank()) mine = std::move(b);
            }
            rollout_ = make_rollout(*s_.model, mine.examples, s_.sc, *s_.codec(), s_.rc.seed * 1000003ull + s_.state.step,
                                    s_.comm);
            record_grading(s_.state.grader_failures, s_.sc, *rollout_, s_.state.step + 1, s_.comm.leader());
            uses_ = 0;
            // The metrics are the whole batch's on every rank: reported once.
            if (s_.comm.leader())
                for (const auto& [k, v] : rollout_->metrics) s_.objective->host_metric(k, v);
        }
        ++uses_;
        out.micro = rollout_->micro;
        out.num_items = rollout_->num_items;
        out.num_examples = rollout_->num_examples;
        out.num_tokens = rollout_->num_tokens;
        out.global_micro = rollout_->global_micro;
        for (size_t a = 0; a < out.micro.size(); ++a) out.index.push_back(rollout_->first_micro + static_cast<int64_t>(a));
        return out;
    }

private:
    Stage& s_;
    std::optional<Rollout> rollout_;
    int64_t uses_ = 0;
};

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// A step whose loss or gradient norm is NaN/Inf (`why`): on_nonfinite = "stop" throws
// naming the step; "skip" counts it (the step makes no update) until max_nonfinite_skips.
void on_nonfinite(Stage& s, const std::string& why) {
    const TrainConfig& tc = s.sc.train;
    const std::string where = "stage '" + s.sc.name + "' step " + std::to_string(s.state.step + 1);
    if (tc.on_nonfinite == "stop")
        throw Error(where + ": " + why + "; nothing was updated. Lower lr, or set [stage.train] on_nonfinite = \"skip\" to "
                        "skip such steps (clipping with max_grad_norm cannot make a non-finite norm finite)",
                    FT_ERR_RUNTIME);
    ++s.state.nonfinite_skips;
    std::cerr << "fthost: warning: " << where << ": " << why << " — the step is skipped, no update ("
              << s.state.nonfinite_skips << " skipped so far)\n";
    if (s.state.nonfinite_skips > tc.max_nonfinite_skips)
        throw Error(where + ": " + std::to_string(s.state.nonfinite_skips) +
                        " steps had a non-finite loss or gradient norm, more than [stage.train] max_nonfinite_skips = " +
                        std::to_string(tc.max_nonfinite_skips) + "; the last: " + why,
                    FT_ERR_RUNTIME);
}

// The seed of a micro-batch's randomness (dropout): from the run's seed, the stage, the
// step and the micro-batch's place in the step — the same whichever rank trains it, so
// that N ranks draw what one process with N times the accumulation draws.
uint64_t micro_batch_seed(const Stage& s, int64_t micro) {
    uint64_t x = s.rc.seed * 0x9E3779B97F4A7C15ull + (s.index + 1) * 0xBF58476D1CE4E5B9ull +
                 (static_cast<uint64_t>(s.state.step) << 24) + static_cast<uint64_t>(micro);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return (x ^ (x >> 31)) >> 1;  // at::manual_seed takes any uint64; kept below 2^63 for the checkpoint's int64
}

// Which micro-batch's gradients are not finite: each one's backward again, from zero,
// on the unchanged weights (only on the way to stopping, so the good path pays nothing).
std::string first_nonfinite_micro_batch(Stage& s, StepBatches& step) {
    std::vector<double> nonfinite(static_cast<size_t>(step.global_micro), 0.0);
    for (size_t a = 0; a < step.micro.size(); ++a) {
        s.optimizer->zero_grad();
        at::manual_seed(micro_batch_seed(s, step.index[a]));
        s.objective->loss(step.micro[a], std::max<int64_t>(1, step.num_items), step.num_examples).backward();
        if (!std::isfinite(s.optimizer->clip_grad_norm(0.0))) nonfinite[static_cast<size_t>(step.index[a])] = 1;
    }
    nonfinite = s.comm.sum(nonfinite, "search for the non-finite micro-batch");
    for (size_t g = 0; g < nonfinite.size(); ++g)
        if (nonfinite[g] > 0)
            return "; re-run alone, micro-batch " + std::to_string(g + 1) + " of " + std::to_string(nonfinite.size()) +
                   " gives it";
    return "";
}

// After the reducer summed the gradients over the ranks: `has_grad` counts, per parameter,
// the ranks where it had one; a parameter with none anywhere keeps none (AdamW skips it,
// as one process would), while elsewhere a missing gradient counted as zeros.
void drop_gradients_no_rank_has(Stage& s, const double* has_grad) {
    for (size_t i = 0; i < s.trainable.size(); ++i)
        if (has_grad[i] == 0) s.trainable[i].second.mutable_grad() = at::Tensor();
}

struct StepResult {
    double loss = 0, grad_norm = 0;
    bool updated = false;  // false: skipped (no rewards, or a non-finite loss / gradient)
    bool stop = false;     // a rank was asked to stop (SIGINT/SIGTERM): every rank stops after this step
    int stop_signal = 0;   // which signal, when stop
};

// Forward and backward over every micro-batch, clipping, the scheduled AdamW step. The
// step's summed loss and gradient norm; counts tokens into the state.
StepResult optimizer_step(Stage& s, StepBatches& step, double lr, double* window_tokens) {
    StepResult out;
    s.state.tokens += step.num_tokens;
    *window_tokens += static_cast<double>(step.num_tokens);
    if (step.global_micro == 0) {  // on-policy: every group of the generation batch lost a reward
        ++s.state.no_reward_steps;
        return out;
    }
    s.model->set_training(!s.no_dropout);
    std::vector<double> losses(static_cast<size_t>(step.global_micro), 0.0);  // in the step's global order
    // A rank with no micro-batch this step (its groups all lost a reward) sends zeros.
    if (s.reducer && step.micro.empty()) s.reducer->arm();
    for (size_t a = 0; a < step.micro.size(); ++a) {
        if (s.reducer && a + 1 == step.micro.size()) s.reducer->arm();  // gradients reduced during this backward
        at::manual_seed(micro_batch_seed(s, step.index[a]));
        at::Tensor loss = s.objective->loss(step.micro[a], std::max<int64_t>(1, step.num_items), step.num_examples);
        loss.backward();
        losses[static_cast<size_t>(step.index[a])] = loss.item<double>();
    }
    // What every rank must agree on, in one collective: each micro-batch's loss, a stop
    // request, and which parameters have a gradient.
    const size_t n = losses.size();
    std::vector<double> shared = losses;
    shared.push_back(stop_requested() ? 1.0 : 0.0);
    shared.push_back(stop_requested() ? stop_signal() : 0.0);
    for (const auto& [name, p] : s.trainable) shared.push_back(p.grad().defined() ? 1.0 : 0.0);
    if (s.reducer) s.reducer->finish();
    shared = s.comm.sum(shared, "loss all-reduce");
    out.stop = shared[n] > 0;
    if (out.stop) out.stop_signal = static_cast<int>(std::lround(shared[n + 1] / shared[n]));
    std::string bad;
    for (size_t g = 0; g < n; ++g) {
        out.loss += shared[g];
        if (!std::isfinite(shared[g]) && bad.empty())
            bad = "the loss is " + number(shared[g]) + " in micro-batch " + std::to_string(g + 1) + " of " + std::to_string(n);
    }
    if (s.reducer) drop_gradients_no_rank_has(s, shared.data() + n + 2);
    if (bad.empty()) {
        out.grad_norm = s.optimizer->clip_grad_norm(s.sc.train.max_grad_norm);  // the global norm: gradients are summed
        if (!std::isfinite(out.grad_norm)) {
            bad = "the gradient norm is " + number(out.grad_norm) + " while every micro-batch's loss is finite";
            if (s.sc.train.on_nonfinite == "stop" && n > 1) bad += first_nonfinite_micro_batch(s, step);
        }
    }
    if (!bad.empty()) {
        s.optimizer->zero_grad();
        on_nonfinite(s, bad);
        out.grad_norm = std::nan("");
        return out;
    }
    s.optimizer->step(lr);
    if (!s.owners.empty()) share_updated_parameters(s.comm, s.trainable, s.owners);  // ZeRO-1
    s.optimizer->zero_grad();
    out.updated = true;
    return out;
}

// An eval during training: a metrics line, and whether early stopping says stop.
bool eval_and_check_stop(Stage& s) {
    const nlohmann::json ev = eval_objective(*s.model, *s.objective, s.data.eval, s.sc, s.device, &s.comm);
    nlohmann::json line = {{"stage", s.sc.name}, {"step", s.state.step}};
    for (const auto& [k, v] : ev.items()) line["eval/" + k] = v;
    for (const auto& [k, v] : s.scores(*s.model)) line["eval/" + k] = v;
    s.dir.append_metrics(line);
    if (!ev.contains("loss")) return false;  // on-policy stages: nothing to stop early on
    const double loss = ev["loss"].get<double>();
    if (std::isnan(loss)) return false;  // nothing to compare
    TrainerState& st = s.state;
    if (!st.has_best || loss < st.best_eval_loss) {
        st.best_eval_loss = loss;
        st.has_best = true;
        st.evals_without_improvement = 0;
        return false;
    }
    return ++st.evals_without_improvement >= s.sc.train.early_stopping_patience && s.sc.train.early_stopping_patience > 0;
}

void write_checkpoint(Stage& s) {
    // ZeRO-1: the owners' moments come to rank 0 first (every rank takes part).
    const TensorList optimizer_state = s.owners.empty() ? (s.comm.leader() ? s.optimizer->state() : TensorList{})
                                                        : gather_optimizer_state(s.comm, *s.optimizer, s.trainable, s.owners);
    if (!s.comm.leader()) return;  // one writer; every rank resumes from it
    s.state.metrics_size = s.dir.metrics_size();
    s.state.seconds = s.seconds();
    save_checkpoint(s.dir.checkpoints_dir(s.sc.name), s.state, s.trainable, optimizer_state, s.sc.train.keep_checkpoints);
}

// Runs steps until the last, an early stop, a stop request (a signal), or
// opts.stop_after_steps (tests of resume);
// returns "completed", "early_stopped" or "interrupted".
std::string train_loop(Stage& s, const StageOptions& opts) {
    const TrainConfig& tc = s.sc.train;
    const Progress progress(s, opts);
    StepSource source(s);
    s.seconds_before = s.state.seconds;
    s.loop_start = Clock::now();
    double window_loss = 0, window_tokens = 0;
    int64_t window_steps = 0;
    auto window_start = Clock::now();
    std::string status = "completed";
    // Before the first step (one process; ranks agree on a stop inside each step).
    if (s.comm.size() == 1 && stop_requested() && s.state.step < s.total_steps) status = "interrupted";
    while (status != "interrupted" && s.state.step < s.total_steps) {
        s.comm.set_context("stage '" + s.sc.name + "' step " + std::to_string(s.state.step + 1));
        StepBatches step = source.next();
        const double lr = scheduled_lr(s.state.step, s.total_steps, tc.warmup_steps, tc.lr, tc.min_lr_ratio);
        const StepResult r = optimizer_step(s, step, lr, &window_tokens);
        ++s.state.step;
        if (r.updated) {  // a skipped step's loss is not part of the logged mean
            window_loss += r.loss;
            ++window_steps;
        }
        s.state.data = s.stream->position();
        const bool last = s.state.step == s.total_steps;

        if (s.state.step % tc.log_every == 0 || last) {
            const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
            const double tps = secs > 0 ? window_tokens / secs : 0;
            const double mean_loss = window_steps ? window_loss / static_cast<double>(window_steps) : std::nan("");
            nlohmann::json line = {{"stage", s.sc.name}, {"step", s.state.step}, {"loss", mean_loss},
                                   {"lr", lr}, {"grad_norm", r.grad_norm}, {"tokens_per_s", tps},
                                   {"epoch", s.state.data.epoch}};
            if (s.state.nonfinite_skips) line["nonfinite_skips"] = s.state.nonfinite_skips;
            if (s.state.no_reward_steps) line["no_reward_steps"] = s.state.no_reward_steps;
            for (const auto& [k, v] : drain_metrics_of_all_ranks(*s.objective, &s.comm)) line[k] = v;
            // Seconds per step spent in collectives (waiting for the slowest rank included).
            if (s.comm.connected()) line["comm_s"] = s.comm.take_seconds() / static_cast<double>(std::max<int64_t>(1, window_steps));
            s.dir.append_metrics(line);
            progress.print(mean_loss, lr, tps);
            window_loss = window_tokens = 0;
            window_steps = 0;
            window_start = Clock::now();
        }
        const bool stop = tc.eval_every > 0 && s.state.step % tc.eval_every == 0 && !last && !s.data.eval.empty() &&
                          eval_and_check_stop(s);
        if (stop) status = "early_stopped";
        // Ranks stop together: on the request every rank saw in this step's collective.
        const bool stop_now = s.comm.size() > 1 ? r.stop : stop_requested();
        if (r.stop) s.stop_signal = r.stop_signal;
        const bool interrupt = !last && (stop_now || (opts.stop_after_steps > 0 && s.state.step >= opts.stop_after_steps));
        // A stop request (SIGINT, SIGTERM) always leaves a checkpoint of this step.
        if (!last && ((tc.checkpoint_every > 0 && s.state.step % tc.checkpoint_every == 0) || stop_now))
            write_checkpoint(s);
        if (interrupt) {
            status = "interrupted";
            break;
        }
        if (stop) break;
    }
    progress.end();
    return status;
}

// Memory high-water marks of a stage: loading (and quantising), then the loop's own; and
// how long the loading took.
struct Peaks {
    int64_t load_rss = 0, train_rss = 0, load_cuda = 0, train_cuda = 0;
    int cuda_index = -1;
    double load_seconds = 0;
};

// Final evaluation (the objective's loss and the graders, the teacher's beside a
// distilled student), final/ written atomically, and the stage's summary entry.
nlohmann::json finish_stage(Stage& s, const std::string& status, const Peaks& peaks) {
    const StageConfig& sc = s.sc;
    nlohmann::json eval = eval_objective(*s.model, *s.objective, s.data.eval, sc, s.device, &s.comm);
    for (const auto& [k, v] : s.scores(*s.model)) eval[k] = v;
    nlohmann::json teacher_eval = nlohmann::json::object();
    if (s.teacher)
        for (const auto& [k, v] : s.scores(*s.teacher)) teacher_eval[k] = v;
    nlohmann::json line = {{"stage", sc.name}, {"step", s.state.step}};
    for (const auto& [k, v] : eval.items()) line["eval/" + k] = v;
    s.dir.append_metrics(line);

    if (s.comm.leader())
        write_directory_atomically(s.dir.final_dir(sc.name), [&](const fs::path& tmp) {
            s.model->save_final(tmp, s.base_dir);
            if (s.codec()) s.codec()->save(tmp);  // the next stage, eval, generate and vLLM read the same tokenizer
        });
    s.comm.set_context("stage '" + sc.name + "' final save");
    s.comm.barrier("barrier after the final save");  // a later stage may start from final/
    const double seconds = s.seconds();  // the loop, the final eval and the save
    nlohmann::json result = {{"name", sc.name},
            {"status", status},
            {"steps", s.state.step},
            {"tokens", s.state.tokens},
            {"seconds", seconds},
            {"tokens_per_s", seconds > 0 ? static_cast<double>(s.state.tokens) / seconds : 0.0},
            {"train_examples", s.data.train.size()},
            {"eval_examples", s.data.eval.size()},
            {"skipped_malformed", s.data.train_stats.skipped + s.data.eval_stats.skipped},
            {"load_seconds", peaks.load_seconds},
            {"load_peak_rss_mb", static_cast<double>(peaks.load_rss) / (1 << 20)},
            {"train_peak_rss_mb", static_cast<double>(peaks.train_rss) / (1 << 20)},
            {"base_eval", s.state.base_eval.is_null() ? nlohmann::json::object() : s.state.base_eval},
            {"eval", eval}};
    if (peaks.cuda_index >= 0) {
        result["load_cuda_peak_mb"] = static_cast<double>(peaks.load_cuda) / (1 << 20);
        result["cuda_peak_mb"] = static_cast<double>(peaks.train_cuda) / (1 << 20);
    }
    if (s.teacher) result["teacher_eval"] = teacher_eval;
    if (s.reference) result["reference"] = s.reference->kind();
    if (s.on_policy) result["grader_failures"] = s.state.grader_failures;
    if (s.state.nonfinite_skips) result["nonfinite_skips"] = s.state.nonfinite_skips;
    if (s.state.no_reward_steps) result["no_reward_steps"] = s.state.no_reward_steps;
    return result;
}

}  // namespace

nlohmann::json train_stage(const RunConfig& rc, size_t index, const PluginRegistry& registry, RunDir& dir,
                           at::Device device, const StageOptions& opts) {
    release_free_memory();  // what an earlier stage freed
    reset_peak_rss();       // this stage's peaks only, not an earlier stage's
    const int cuda_index = device.is_cuda() ? (device.has_index() ? device.index() : 0) : -1;
    if (cuda_index >= 0) reset_cuda_peak(cuda_index);
    std::unique_ptr<Communicator> alone;
    Communicator* comm = opts.comm;
    if (!comm) {
        alone = Communicator::connect(World{}, DistributedConfig{}, device);
        comm = alone.get();
    }
    Stage s{rc, rc.stages.at(index), index, dir, device, *comm};
    const auto setup_start = Clock::now();
    map_large_blocks_on_their_own();  // weight-sized blocks go back to the system when freed
    setup_stage(s, registry);
    start_or_resume(s, opts);

    Peaks peaks;
    peaks.load_seconds = std::chrono::duration<double>(Clock::now() - setup_start).count();
    peaks.load_rss = peak_rss_bytes();
    reset_peak_rss();
    peaks.cuda_index = cuda_index;
    if (cuda_index >= 0) {
        peaks.load_cuda = cuda_peak_bytes(cuda_index);  // loading (and quantising) on the device
        reset_cuda_peak(cuda_index);
    }
    const std::string status = train_loop(s, opts);
    if (status == "interrupted") {
        nlohmann::json r = {{"name", s.sc.name}, {"status", status}, {"steps", s.state.step}};
        const int sig = stop_requested() ? stop_signal() : s.stop_signal;
        if (sig) r["signal"] = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
        if (auto ckpt = latest_checkpoint(s.dir.checkpoints_dir(s.sc.name))) r["checkpoint"] = ckpt->string();
        return r;
    }
    peaks.train_rss = peak_rss_bytes();
    // The loop's device peak, before the final eval and save add theirs.
    if (peaks.cuda_index >= 0) peaks.train_cuda = cuda_peak_bytes(peaks.cuda_index);
    nlohmann::json result = finish_stage(s, status, peaks);
    if (opts.on_trained_model) opts.on_trained_model(s.sc.name, *s.model);
    return result;
}

}  // namespace fthost::host
