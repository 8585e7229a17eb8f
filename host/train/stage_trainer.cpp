#include "train/stage_trainer.hpp"

#include "data/batch_stream.hpp"
#include "data/dataset.hpp"
#include "eval/grading.hpp"
#include "eval/task_eval.hpp"
#include "generate/generator.hpp"
#include "io/atomic_file.hpp"
#include "run/host_api.hpp"
#include "train/adamw.hpp"
#include "train/autocast.hpp"
#include "train/checkpoint.hpp"
#include "train/model_session.hpp"
#include "train/process_memory.hpp"
#include "train/reference_model.hpp"
#include "train/rollout.hpp"

#include <fthost/torch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fthost::host {

at::Device resolve_device(const std::string& device) {
    if (device == "cuda" && !at::hasCUDA()) throw Error("[run] device = \"cuda\" but no CUDA device is available", FT_ERR_CONFIG);
    if (device == "cuda" || (device == "auto" && at::hasCUDA())) return at::Device(at::kCUDA, 0);
    return at::Device(at::kCPU);
}

namespace {

using Clock = std::chrono::steady_clock;

std::string format_duration(double s) {
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else std::snprintf(buf, sizeof buf, "%.0fs", s);
    return buf;
}

// Calls the objective plugin for one batch, and answers its requests for log-probs and
// logits of the policy, the reference and the teacher.
class ObjectiveCall {
public:
    ObjectiveCall(const PluginSection& obj, ModelSession& model) : model_(model) {
        vt_ = static_cast<const ft_objective_vtable*>(obj.loaded->desc->vtable);
        traits_ = objective_traits(vt_);
        ft_error err{};
        check(vt_->create(host_api(), &obj.config, &handle_, &err), err);
        run_.token_logprobs = [this](const ft_batch& b, int32_t which, double temperature) -> at::Tensor {
            switch (which) {
                case FT_RUN_POLICY: return model_.token_logprobs(b, false, temperature);
                case FT_RUN_REFERENCE:
                    if (!reference_) throw Error("the objective asked for reference log-probs but declares no FT_NEEDS_REFERENCE");
                    return reference_->token_logprobs(b, *current_, temperature);
                case FT_RUN_TEACHER: {
                    if (!teacher_) throw Error("the objective asked for a teacher but declares no FT_NEEDS_TEACHER");
                    at::NoGradGuard ng;
                    return teacher_->token_logprobs(b, false, temperature);
                }
            }
            throw Error("unknown model " + std::to_string(which) + " (FT_RUN_POLICY, FT_RUN_REFERENCE, FT_RUN_TEACHER)");
        };
        run_.label_logits = [this](const ft_batch& b, int32_t which) -> at::Tensor {
            if (which == FT_RUN_POLICY) return model_.label_logits(b);
            if (which == FT_RUN_REFERENCE && reference_) return reference_->label_logits(b);
            if (which == FT_RUN_TEACHER && teacher_) {
                at::NoGradGuard ng;
                return teacher_->label_logits(b);
            }
            throw Error("no label logits for model " + std::to_string(which) +
                        " (the objective did not declare FT_NEEDS_REFERENCE / FT_NEEDS_TEACHER for it)");
        };
        run_.metric = [this](const std::string& n, double v) {
            auto& m = metrics_[in_eval_];
            m.sum[n] += v;
            m.count[n] += 1;
        };
    }
    ~ObjectiveCall() { vt_->destroy(handle_); }
    ft_label_policy policy() const { return vt_->label_policy; }
    const ObjectiveTraits& traits() const { return traits_; }
    void set_reference(ReferenceModel* r) { reference_ = r; }
    void set_teacher(ModelSession* t) { teacher_ = t; }

    void on_dataset(const std::vector<Example>& train) {
        if (!traits_.on_dataset) return;
        ft_dataset_info info{sizeof(ft_dataset_info), static_cast<int64_t>(train.size()), 0, 0};
        for (const auto& ex : train) {
            info.num_desirable += ex.desirable == 1;
            info.num_undesirable += ex.desirable == 0;
        }
        ft_error err{};
        check(traits_.on_dataset(handle_, &info, &err), err);
    }

    at::Tensor loss(HostBatch& b, int64_t num_items, int64_t num_examples) {
        ft_batch fb = as_ft_batch(b, num_items, num_examples);
        ft_tensor out = nullptr;
        ft_error err{};
        current_ = &b;
        {
            AutocastScope autocast(model_.device(), bf16_);  // forward and loss; backward replays the dtypes
            check(vt_->loss(handle_, &run_, &fb, &out, &err), err);
        }
        current_ = nullptr;
        return take(out);
    }
    void set_bf16(bool on) { bf16_ = on; }
    // A host-side metric (rollout rewards, generation speed) in the training window.
    void host_metric(const std::string& name, double value) { run_.metric(name, value); }
    // Metrics reported from now on belong to the eval pass (kept apart from the
    // training window's).
    void set_eval(bool on) { in_eval_ = on; }
    // Objective metrics (of training or of eval) averaged since the last call.
    std::map<std::string, double> drain_metrics() {
        auto& m = metrics_[in_eval_];
        std::map<std::string, double> out;
        for (const auto& [n, s] : m.sum) out[n] = s / static_cast<double>(m.count[n]);
        m = {};
        return out;
    }

private:
    bool bf16_ = false;
    ModelSession& model_;
    const ft_objective_vtable* vt_;
    ObjectiveTraits traits_;
    ft_objective* handle_ = nullptr;
    ft_run_s run_;
    ReferenceModel* reference_ = nullptr;
    ModelSession* teacher_ = nullptr;
    const HostBatch* current_ = nullptr;
    struct Sums {
        std::map<std::string, double> sum, count;
    };
    Sums metrics_[2];  // [0] training window, [1] eval pass
    bool in_eval_ = false;
};

// Eval batches in the objective's shape, unshuffled and unpacked.
std::vector<HostBatch> eval_batches(const std::vector<Example>& eval, int64_t batch_size, ft_data_shape shape,
                                    at::Device device) {
    std::vector<HostBatch> out;
    for (size_t i = 0; i < eval.size(); i += static_cast<size_t>(batch_size)) {
        std::vector<const Example*> examples;
        for (size_t j = i; j < std::min(eval.size(), i + static_cast<size_t>(batch_size)); ++j) examples.push_back(&eval[j]);
        out.push_back(to_device(collate_shaped(examples, shape), device));
    }
    return out;
}

// The objective's loss over the whole eval set (one per-token / per-example mean, as
// in training) and its metrics averaged over the eval batches.
nlohmann::json eval_objective(ModelSession& model, ObjectiveCall& objective, const std::vector<Example>& eval,
                              const StageConfig& sc, at::Device device) {
    nlohmann::json out = nlohmann::json::object();
    // On-policy objectives have no loss without sampling; their eval is the graders'.
    if (eval.empty() || objective.traits().data_shape == FT_DATA_COMPLETIONS) return out;
    at::NoGradGuard ng;
    model.set_training(false);
    objective.set_eval(true);
    objective.drain_metrics();
    auto batches = eval_batches(eval, sc.train.batch_size, objective.traits().data_shape, device);
    int64_t items = 0, examples = 0;
    for (const auto& b : batches) items += b.num_labels, examples += b.num_examples;
    double sum = 0;
    for (auto& b : batches) sum += objective.loss(b, std::max<int64_t>(items, 1), examples).item<double>();
    out["loss"] = sum;
    for (const auto& [k, v] : objective.drain_metrics()) out[k] = v;
    objective.set_eval(false);
    return out;
}

}  // namespace

// Held-out preference accuracy: the share of pairs whose chosen completion has a
// higher summed log-prob than the rejected one under `model`.
double preference_accuracy(ModelSession& model, const std::vector<Example>& eval, int64_t batch_size, at::Device device) {
    at::NoGradGuard ng;
    model.set_training(false);
    int64_t right = 0, total = 0;
    for (auto& b : eval_batches(eval, batch_size, FT_DATA_PAIRS, device)) {
        ft_batch fb = as_ft_batch(b, b.num_labels);
        const at::Tensor lp = model.token_logprobs(fb, false);
        const at::Tensor sums = (lp * b.completion_mask.to(lp.scalar_type())).sum(-1);
        const int64_t n = b.num_examples;
        right += sums.narrow(0, 0, n).gt(sums.narrow(0, n, n)).sum().item<int64_t>();
        total += n;
    }
    return total ? static_cast<double>(right) / static_cast<double>(total) : std::nan("");
}

// What on-policy training optimises: the graders' mean over 4 completions per held-out
// prompt sampled as in training ([stage.generation]), from a fixed seed.
std::map<std::string, double> sampled_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                             const TextCodec& codec) {
    constexpr int64_t kSamples = 4;
    std::vector<const Example*> items;
    for (const auto& ex : eval) items.push_back(&ex);
    if (sc.eval.max_examples > 0 && static_cast<int64_t>(items.size()) > sc.eval.max_examples)
        items.resize(sc.eval.max_examples);
    std::vector<std::vector<int64_t>> prompts;
    for (const Example* ex : items)
        for (int64_t i = 0; i < kSamples; ++i) prompts.push_back(ex->prompt_ids);
    SamplingOptions o;
    o.max_new_tokens = sc.generation.max_new_tokens;
    o.temperature = sc.generation.temperature;
    o.top_k = sc.generation.top_k;
    o.top_p = sc.generation.top_p;
    o.seed = 20261129;
    o.cuda_graphs = sc.cuda_graphs;
    AutocastScope autocast(model.device(), sc.bf16);
    const auto gens = generate(model, prompts, o, sc.eval.batch_size, codec);
    std::vector<GradeInput> inputs;
    for (size_t i = 0; i < gens.size(); ++i) {
        const Example& ex = *items[i / kSamples];
        inputs.push_back({ex.prompt_text, gens[i].text, ex.reference, ex.row_json});
    }
    const auto scores = grade_all(sc.graders, inputs);
    return mean_by_grader(sc.graders, scores);
}

std::map<std::string, double> held_out_scores(ModelSession& model, const std::vector<Example>& eval, const StageConfig& sc,
                                              const TextCodec& codec, ft_data_shape shape, at::Device device) {
    std::map<std::string, double> scores;
    if (eval.empty()) return scores;
    if (!sc.graders.empty()) {
        if (shape == FT_DATA_FEEDBACK) {
            // A thumbs-down row's completion is a wrong answer, not a reference: the
            // graders score the desirable rows only.
            std::vector<Example> desirable;
            for (const auto& ex : eval)
                if (ex.desirable == 1) desirable.push_back(ex);
            if (!desirable.empty()) scores = run_task_eval(model, desirable, sc, codec).scores;
        } else {
            scores = run_task_eval(model, eval, sc, codec).scores;
        }
    }
    if (shape == FT_DATA_PAIRS) scores["preference_accuracy"] = preference_accuracy(model, eval, sc.train.batch_size, device);
    if (shape == FT_DATA_COMPLETIONS)
        for (const auto& [k, v] : sampled_scores(model, eval, sc, codec)) scores["sampled/" + k] = v;
    return scores;
}

nlohmann::json train_stage(const RunConfig& rc, size_t index, const PluginRegistry& registry, RunDir& dir,
                           at::Device device, const StageOptions& opts) {
    const StageConfig& sc = rc.stages.at(index);
    reset_peak_rss();  // this stage's peaks only, not an earlier stage's
    at::manual_seed(rc.seed + 1000003ull * index);
    set_host_seed(rc.seed + index);

    // The model: fresh from its plugin, or the earlier stage's final result.
    std::unique_ptr<ModelSession> model;
    fs::path base_dir;
    if (sc.init_from.empty()) {
        PluginSection m = sc.model;
        const std::string vw = m.config.where_of("vocab_size");
        if (m.config.has("vocab_size") && vw.find("(default)") != std::string::npos)
            m.config.values["vocab_size"] = int64_t{TextCodec::bytes()->vocab_size()};
        model = std::make_unique<ModelSession>(m, registry, device);
    } else {
        base_dir = is_stage_path(sc.init_from) ? fs::path(sc.init_from) : dir.final_dir(sc.init_from);
        model = ModelSession::from_stage_dir(base_dir, registry, device);
    }
    // Text -> tokens: the tokenizer that came with the starting model (a Hugging Face
    // checkpoint's, kept in every final/ trained from it), else the byte tokenizer.
    const std::shared_ptr<const TextCodec> codec_ptr =
        base_dir.empty() ? TextCodec::bytes() : TextCodec::for_model(base_dir, sc.data.chat_template);
    const TextCodec& codec = *codec_ptr;
    if (model->vocab_size() < codec.vocab_size())
        throw Error("stage '" + sc.name + "': the model's vocab_size " + std::to_string(model->vocab_size()) +
                        " is smaller than the tokenizer's " + std::to_string(codec.vocab_size()) + " (" +
                        codec.describe() + ")",
                    FT_ERR_CONFIG);
    ObjectiveCall objective(sc.objective, *model);
    objective.set_bf16(rc.precision == "bf16");
    const ft_data_shape shape = objective.traits().data_shape;
    Datasets data = load_datasets(sc.data, codec, objective.policy(), rc.seed, shape, sc.train.batch_size);
    if (data.train_stats.skipped + data.eval_stats.skipped > 0)
        std::cerr << "fthost: stage '" << sc.name << "': skipped " << data.train_stats.skipped + data.eval_stats.skipped
                  << " malformed lines\n";
    objective.on_dataset(data.train);

    // The teacher (distillation): frozen, in this process, with the student's vocabulary.
    std::unique_ptr<ModelSession> teacher;
    if (objective.traits().needs & FT_NEEDS_TEACHER) {
        const fs::path tdir = is_stage_path(sc.teacher) ? fs::path(sc.teacher) : dir.final_dir(sc.teacher);
        teacher = ModelSession::from_stage_dir(tdir, registry, device);
        teacher->freeze();
        if (teacher->vocab_size() != model->vocab_size())
            throw Error("stage '" + sc.name + "': the teacher (" + tdir.string() + ") has vocab_size " +
                            std::to_string(teacher->vocab_size()) + ", the student " +
                            std::to_string(model->vocab_size()) +
                            "; distillation compares token distributions and needs the same vocabulary",
                        FT_ERR_CONFIG);
        objective.set_teacher(teacher.get());
    }

    model->apply_param(sc.param);
    model->set_activation_checkpointing(sc.train.activation_checkpointing);
    release_free_memory();  // what loading and the parameterisation freed (qlora: the fp32 base)
    if (base_dir.empty() && !model->is_full() && model->base_weights_released())
        throw Error("stage '" + sc.name + "': [stage.param] plugin '" + sc.param.plugin +
                        "' replaces the base weights by another form (4-bit) and frees them, so the stage's "
                        "adapter needs a saved base: set init_from to an earlier stage or a final/ directory",
                    FT_ERR_CONFIG);
    // The reference is the model as the stage starts: adapters off, or a frozen copy.
    std::unique_ptr<ReferenceModel> reference;
    if (objective.traits().needs & FT_NEEDS_REFERENCE) {
        reference = std::make_unique<ReferenceModel>(*model);
        if (sc.train.precompute_ref_log_probs)
            reference->precompute({&data.train, &data.eval}, shape, sc.train.batch_size, sc.bf16);
        objective.set_reference(reference.get());
    }
    // Preference and distillation stages train without dropout unless asked (TRL's
    // disable_dropout): the policy must match the reference when nothing has changed.
    const bool no_dropout = sc.train.disable_dropout &&
                            (shape != FT_DATA_SEQUENCES || (objective.traits().needs & (FT_NEEDS_REFERENCE | FT_NEEDS_TEACHER)));
    TensorList trainable = model->trainable_parameters();
    AdamW optimizer(trainable, {sc.train.beta1, sc.train.beta2, sc.train.eps, sc.train.weight_decay});
    // On-policy stages draw prompts: one step's completions come from
    // batch_size x grad_accum / num_generations of them, reused for num_iterations steps.
    const bool on_policy = shape == FT_DATA_COMPLETIONS;
    const int64_t prompts_per_step = sc.train.batch_size * sc.train.grad_accum / sc.generation.num_generations;
    BatchStream stream(data.train, on_policy ? prompts_per_step : sc.train.batch_size, sc.data.max_seq_len,
                       sc.data.packing, sc.data.shuffle, rc.seed + index, shape);
    const int64_t total_steps =
        sc.train.steps > 0 ? sc.train.steps
        : on_policy        ? sc.train.epochs * stream.batches_per_epoch() * sc.generation.num_iterations
                           : sc.train.epochs * ((stream.batches_per_epoch() + sc.train.grad_accum - 1) / sc.train.grad_accum);
    std::optional<Rollout> rollout;
    int64_t rollout_uses = 0;

    TrainerState state;
    bool resumed = false;
    if (opts.resume) {
        if (auto ckpt = latest_checkpoint(dir.checkpoints_dir(sc.name))) {
            state = load_checkpoint(*ckpt, trainable, optimizer);
            stream.seek(state.data);
            dir.truncate_metrics(state.metrics_size);
            resumed = true;
            if (!opts.quiet) std::cerr << "fthost: stage '" << sc.name << "' resumes from " << ckpt->string() << "\n";
        }
    }
    if (!resumed) {
        // A fresh start of this stage: forget checkpoints and metrics of an earlier attempt.
        fs::remove_all(dir.checkpoints_dir(sc.name));
        dir.drop_metrics_of(sc.name);
        if (sc.eval.base)
            for (const auto& [k, v] : held_out_scores(*model, data.eval, sc, codec, shape, device)) state.base_eval[k] = v;
    }

    const bool tty = ::isatty(2) && !opts.quiet;
    std::string status = "completed";
    double window_loss = 0, window_tokens = 0;
    int64_t window_steps = 0;
    auto window_start = Clock::now();
    const double seconds_before = state.seconds;
    // Memory: the peak of loading (and quantising) the model, then the training loop's own.
    const int64_t load_peak_rss = peak_rss_bytes();
    reset_peak_rss();
    const int cuda_index = device.is_cuda() ? (device.has_index() ? device.index() : 0) : -1;
    if (cuda_index >= 0) reset_cuda_peak(cuda_index);
    const auto loop_start = Clock::now();
    const int64_t first_step = state.step;
    auto print_progress = [&](double loss, double lr, double tps) {
        if (opts.quiet) return;
        const double elapsed = std::chrono::duration<double>(Clock::now() - loop_start).count();
        const int64_t done = state.step - first_step;  // steps run by this process
        const double eta = done > 0 ? elapsed / static_cast<double>(done) * static_cast<double>(total_steps - state.step) : 0;
        char buf[256];
        std::snprintf(buf, sizeof buf, "[%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  eta %s", sc.name.c_str(),
                      static_cast<long long>(state.step), static_cast<long long>(total_steps), loss, lr, tps,
                      format_duration(eta).c_str());
        if (tty) std::cerr << "\r" << buf << "\033[K" << std::flush;
        else std::cerr << buf << "\n";
    };

    while (state.step < total_steps) {
        std::vector<HostBatch> micro;
        int64_t num_items = 0, num_examples = 0;
        if (on_policy) {
            if (!rollout || rollout_uses == sc.generation.num_iterations) {
                rollout = make_rollout(*model, stream.next().examples, sc, codec, rc.seed * 1000003ull + state.step);
                rollout_uses = 0;
                for (const auto& [k, v] : rollout->metrics) objective.host_metric(k, v);
            }
            ++rollout_uses;
            micro = rollout->micro;
            num_items = rollout->num_items;
            num_examples = static_cast<int64_t>(rollout->rows.size());
        } else {
            for (int64_t a = 0; a < sc.train.grad_accum; ++a) {
                micro.push_back(to_device(stream.next(), device));
                num_items += micro.back().num_labels;
                num_examples += micro.back().num_examples;
            }
        }
        model->set_training(!no_dropout);
        double step_loss = 0;
        for (auto& b : micro) {
            at::Tensor loss = objective.loss(b, std::max<int64_t>(1, num_items), num_examples);
            loss.backward();
            step_loss += loss.item<double>();
            state.tokens += b.num_tokens;
            window_tokens += static_cast<double>(b.num_tokens);
        }
        if (!std::isfinite(step_loss))
            throw Error("stage '" + sc.name + "': loss became " + std::to_string(step_loss) + " at step " +
                        std::to_string(state.step + 1) + " (lower lr or raise max_grad_norm?)");
        const double grad_norm = optimizer.clip_grad_norm(sc.train.max_grad_norm);
        const double lr = scheduled_lr(state.step, total_steps, sc.train.warmup_steps, sc.train.lr, sc.train.min_lr_ratio);
        optimizer.step(lr);
        optimizer.zero_grad();
        ++state.step;
        window_loss += step_loss;
        ++window_steps;
        state.data = stream.position();

        if (state.step % sc.train.log_every == 0 || state.step == total_steps) {
            const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
            const double tps = secs > 0 ? window_tokens / secs : 0;
            nlohmann::json line = {{"stage", sc.name}, {"step", state.step}, {"loss", window_loss / window_steps},
                                   {"lr", lr}, {"grad_norm", grad_norm}, {"tokens_per_s", tps},
                                   {"epoch", state.data.epoch}};
            for (const auto& [k, v] : objective.drain_metrics()) line[k] = v;
            dir.append_metrics(line);
            print_progress(window_loss / window_steps, lr, tps);
            window_loss = window_tokens = 0;
            window_steps = 0;
            window_start = Clock::now();
        }
        bool stop = false;
        if (sc.train.eval_every > 0 && state.step % sc.train.eval_every == 0 && state.step < total_steps &&
            !data.eval.empty()) {
            const nlohmann::json ev = eval_objective(*model, objective, data.eval, sc, device);
            const double el = ev.contains("loss") ? ev["loss"].get<double>() : std::nan("");
            nlohmann::json line = {{"stage", sc.name}, {"step", state.step}};
            for (const auto& [k, v] : ev.items()) line["eval/" + k] = v;
            for (const auto& [k, v] : held_out_scores(*model, data.eval, sc, codec, shape, device)) line["eval/" + k] = v;
            dir.append_metrics(line);
            if (std::isnan(el)) {
                // No eval loss (on-policy stages): nothing to stop early on.
            } else if (!state.has_best || el < state.best_eval_loss) {
                state.best_eval_loss = el;
                state.has_best = true;
                state.evals_without_improvement = 0;
            } else if (++state.evals_without_improvement >= sc.train.early_stopping_patience &&
                       sc.train.early_stopping_patience > 0) {
                status = "early_stopped";
                stop = true;
            }
        }
        if (sc.train.checkpoint_every > 0 && state.step % sc.train.checkpoint_every == 0 && state.step < total_steps) {
            state.metrics_size = dir.metrics_size();
            state.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - loop_start).count();
            save_checkpoint(dir.checkpoints_dir(sc.name), state, trainable, optimizer, sc.train.keep_checkpoints);
        }
        if (opts.stop_after_steps > 0 && state.step >= opts.stop_after_steps && state.step < total_steps) {
            if (tty) std::cerr << "\n";
            return {{"name", sc.name}, {"status", "interrupted"}, {"steps", state.step}};
        }
        if (stop) break;
    }
    if (tty) std::cerr << "\n";

    const int64_t train_peak_rss = peak_rss_bytes();
    // The training loop's device peak, before the final eval and save add theirs.
    const int64_t train_cuda_peak = cuda_index >= 0 ? cuda_peak_bytes(cuda_index) : 0;
    // Final evaluation: loss and task metrics on the held-out set.
    nlohmann::json eval = eval_objective(*model, objective, data.eval, sc, device);
    for (const auto& [k, v] : held_out_scores(*model, data.eval, sc, codec, shape, device)) eval[k] = v;
    // A distilled student is reported next to its teacher.
    nlohmann::json teacher_eval = nlohmann::json::object();
    if (teacher)
        for (const auto& [k, v] : held_out_scores(*teacher, data.eval, sc, codec, shape, device)) teacher_eval[k] = v;
    nlohmann::json line = {{"stage", sc.name}, {"step", state.step}};
    for (const auto& [k, v] : eval.items()) line["eval/" + k] = v;
    dir.append_metrics(line);

    write_directory_atomically(dir.final_dir(sc.name), [&](const fs::path& tmp) {
        model->save_final(tmp, base_dir);
        codec.save(tmp);  // the next stage, eval, generate and vLLM read the same tokenizer
    });
    const double seconds = seconds_before + std::chrono::duration<double>(Clock::now() - loop_start).count();
    nlohmann::json result = {{"name", sc.name},
            {"status", status},
            {"steps", state.step},
            {"tokens", state.tokens},
            {"seconds", seconds},
            {"tokens_per_s", seconds > 0 ? static_cast<double>(state.tokens) / seconds : 0.0},
            {"train_examples", data.train.size()},
            {"eval_examples", data.eval.size()},
            {"skipped_malformed", data.train_stats.skipped + data.eval_stats.skipped},
            {"load_peak_rss_mb", static_cast<double>(load_peak_rss) / (1 << 20)},
            {"train_peak_rss_mb", static_cast<double>(train_peak_rss) / (1 << 20)},
            {"base_eval", state.base_eval.is_null() ? nlohmann::json::object() : state.base_eval},
            {"eval", eval}};
    if (cuda_index >= 0) result["cuda_peak_mb"] = static_cast<double>(train_cuda_peak) / (1 << 20);
    if (teacher) result["teacher_eval"] = teacher_eval;
    return result;
}

}  // namespace fthost::host
