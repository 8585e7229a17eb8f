#include "train/stage_trainer.hpp"

#include "data/batch_stream.hpp"
#include "data/dataset.hpp"
#include "eval/task_eval.hpp"
#include "io/atomic_file.hpp"
#include "run/host_api.hpp"
#include "train/adamw.hpp"
#include "train/checkpoint.hpp"
#include "train/model_session.hpp"

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

HostBatch to_device(HostBatch b, at::Device d) {
    if (d == at::kCPU) return b;
    b.input_ids = b.input_ids.to(d);
    b.labels = b.labels.to(d);
    b.position_ids = b.position_ids.to(d);
    b.sequence_ids = b.sequence_ids.to(d);
    return b;
}

// Calls the objective plugin for one batch.
class ObjectiveCall {
public:
    ObjectiveCall(const PluginSection& obj, ModelSession& model) : model_(model) {
        vt_ = static_cast<const ft_objective_vtable*>(obj.loaded->desc->vtable);
        ft_error err{};
        check(vt_->create(host_api(), &obj.config, &handle_, &err), err);
        run_.token_logprobs = [this](const ft_batch& b, bool ref) { return model_.token_logprobs(b, ref); };
        run_.metric = [this](const std::string& n, double v) {
            metric_sum_[n] += v;
            metric_count_[n] += 1;
        };
    }
    ~ObjectiveCall() { vt_->destroy(handle_); }
    ft_label_policy policy() const { return vt_->label_policy; }

    at::Tensor loss(HostBatch& b, int64_t num_items) {
        ft_batch fb = as_ft_batch(b, num_items);
        ft_tensor out = nullptr;
        ft_error err{};
        check(vt_->loss(handle_, &run_, &fb, &out, &err), err);
        return take(out);
    }
    // Objective metrics averaged since the last call.
    std::map<std::string, double> drain_metrics() {
        std::map<std::string, double> out;
        for (const auto& [n, s] : metric_sum_) out[n] = s / static_cast<double>(metric_count_[n]);
        metric_sum_.clear();
        metric_count_.clear();
        return out;
    }

private:
    ModelSession& model_;
    const ft_objective_vtable* vt_;
    ft_objective* handle_ = nullptr;
    ft_run_s run_;
    std::map<std::string, double> metric_sum_, metric_count_;
};

// Per-token mean loss over the whole eval set (one division, as in training).
double eval_loss(ModelSession& model, ObjectiveCall& objective, const std::vector<Example>& eval, const StageConfig& sc,
                 at::Device device) {
    if (eval.empty()) return std::nan("");
    at::NoGradGuard ng;
    model.set_training(false);
    std::vector<std::vector<std::vector<const Example*>>> batches;
    int64_t total = 0;
    for (size_t i = 0; i < eval.size(); i += static_cast<size_t>(sc.train.batch_size)) {
        std::vector<std::vector<const Example*>> rows;
        for (size_t j = i; j < std::min(eval.size(), i + static_cast<size_t>(sc.train.batch_size)); ++j) {
            rows.push_back({&eval[j]});
            total += eval[j].num_labels();
        }
        batches.push_back(std::move(rows));
    }
    double sum = 0;
    for (const auto& rows : batches) {
        HostBatch b = to_device(collate(rows), device);
        sum += objective.loss(b, total).item<double>();
    }
    objective.drain_metrics();
    return sum;
}

}  // namespace

nlohmann::json train_stage(const RunConfig& rc, size_t index, const PluginRegistry& registry, RunDir& dir,
                           at::Device device, const StageOptions& opts) {
    const StageConfig& sc = rc.stages.at(index);
    at::manual_seed(rc.seed + 1000003ull * index);
    set_host_seed(rc.seed + index);
    ByteTokenizer tok;

    // The model: fresh from its plugin, or the earlier stage's final result.
    std::unique_ptr<ModelSession> model;
    fs::path base_dir;
    if (sc.init_from.empty()) {
        PluginSection m = sc.model;
        const std::string vw = m.config.where_of("vocab_size");
        if (m.config.has("vocab_size") && vw.find("(default)") != std::string::npos)
            m.config.values["vocab_size"] = int64_t{tok.vocab_size()};
        model = std::make_unique<ModelSession>(m, registry, device);
    } else {
        base_dir = dir.final_dir(sc.init_from);
        model = ModelSession::from_stage_dir(base_dir, registry, device);
    }
    if (model->vocab_size() < tok.vocab_size())
        throw Error("stage '" + sc.name + "': the model's vocab_size " + std::to_string(model->vocab_size()) +
                        " is smaller than the tokenizer's " + std::to_string(tok.vocab_size()),
                    FT_ERR_CONFIG);
    ObjectiveCall objective(sc.objective, *model);
    Datasets data = load_datasets(sc.data, tok, objective.policy(), rc.seed);
    if (data.train_stats.skipped + data.eval_stats.skipped > 0)
        std::cerr << "fthost: stage '" << sc.name << "': skipped " << data.train_stats.skipped + data.eval_stats.skipped
                  << " malformed lines\n";

    model->apply_param(sc.param);
    TensorList trainable = model->trainable_parameters();
    AdamW optimizer(trainable, {sc.train.beta1, sc.train.beta2, sc.train.eps, sc.train.weight_decay});
    BatchStream stream(data.train, sc.train.batch_size, sc.data.max_seq_len, sc.data.packing, sc.data.shuffle, rc.seed + index);
    const int64_t total_steps =
        sc.train.steps > 0 ? sc.train.steps
                           : sc.train.epochs * ((stream.batches_per_epoch() + sc.train.grad_accum - 1) / sc.train.grad_accum);

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
        if (sc.eval.base && !sc.graders.empty() && !data.eval.empty()) {
            auto r = run_task_eval(*model, data.eval, sc, tok);
            for (const auto& [k, v] : r.scores) state.base_eval[k] = v;
        }
    }

    const bool tty = ::isatty(2) && !opts.quiet;
    std::string status = "completed";
    double window_loss = 0, window_tokens = 0;
    int64_t window_steps = 0;
    auto window_start = Clock::now();
    const double seconds_before = state.seconds;
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
        model->set_training(true);
        std::vector<HostBatch> micro;
        int64_t num_items = 0;
        for (int64_t a = 0; a < sc.train.grad_accum; ++a) {
            micro.push_back(to_device(stream.next(), device));
            num_items += micro.back().num_labels;
        }
        double step_loss = 0;
        for (auto& b : micro) {
            at::Tensor loss = objective.loss(b, std::max<int64_t>(1, num_items));
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
            const double el = eval_loss(*model, objective, data.eval, sc, device);
            nlohmann::json line = {{"stage", sc.name}, {"step", state.step}, {"eval/loss", el}};
            for (const auto& [k, v] : run_task_eval(*model, data.eval, sc, tok).scores) line["eval/" + k] = v;
            dir.append_metrics(line);
            if (!state.has_best || el < state.best_eval_loss) {
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

    // Final evaluation: loss and task metrics on the held-out set.
    nlohmann::json eval = nlohmann::json::object();
    if (!data.eval.empty()) {
        eval["loss"] = eval_loss(*model, objective, data.eval, sc, device);
        auto r = run_task_eval(*model, data.eval, sc, tok);
        for (const auto& [k, v] : r.scores) eval[k] = v;
    }
    nlohmann::json line = {{"stage", sc.name}, {"step", state.step}};
    for (const auto& [k, v] : eval.items()) line["eval/" + k] = v;
    dir.append_metrics(line);

    write_directory_atomically(dir.final_dir(sc.name), [&](const fs::path& tmp) { model->save_final(tmp, base_dir); });
    const double seconds = seconds_before + std::chrono::duration<double>(Clock::now() - loop_start).count();
    return {{"name", sc.name},
            {"status", status},
            {"steps", state.step},
            {"tokens", state.tokens},
            {"seconds", seconds},
            {"train_examples", data.train.size()},
            {"eval_examples", data.eval.size()},
            {"skipped_malformed", data.train_stats.skipped + data.eval_stats.skipped},
            {"base_eval", state.base_eval.is_null() ? nlohmann::json::object() : state.base_eval},
            {"eval", eval}};
}

}  // namespace fthost::host
