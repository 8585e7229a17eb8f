#include "train/objective_call.hpp"

#include "eval/held_out.hpp"

namespace fthost::host {

ObjectiveCall::ObjectiveCall(const PluginSection& obj, ModelSession& model) : model_(model) {
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
    run_.model_outputs = [this](const ft_batch& b, int32_t which) -> std::map<std::string, at::Tensor> {
        if (which == FT_RUN_POLICY) return model_.model_outputs(b);
        if (which == FT_RUN_REFERENCE && reference_) return reference_->model_outputs(b);
        if (which == FT_RUN_TEACHER && teacher_) {
            at::NoGradGuard ng;
            return teacher_->model_outputs(b);
        }
        throw Error("no model outputs for model " + std::to_string(which) +
                    " (the objective did not declare FT_NEEDS_REFERENCE / FT_NEEDS_TEACHER for it)");
    };
    run_.metric = [this](const std::string& n, double v) {
        auto& m = metrics_[in_eval_];
        m.sum[n] += v;
        m.count[n] += 1;
    };
}

std::map<std::string, double> drain_metrics_of_all_ranks(ObjectiveCall& objective, Communicator* comm) {
    if (!comm || !comm->connected()) return objective.drain_metrics();
    nlohmann::json mine = nlohmann::json::object();
    for (const auto& [k, sum_count] : objective.drain_metric_sums()) mine[k] = {sum_count.first, sum_count.second};
    std::map<std::string, std::pair<double, double>> total;
    for (const auto& rank : comm->gather_to_leader(mine, "gather of the objective's metrics"))
        for (const auto& [k, v] : rank.items()) {
            total[k].first += v[0].is_number() ? v[0].get<double>() : std::nan("");  // NaN travels as null
            total[k].second += v[1].get<double>();
        }
    std::map<std::string, double> out;
    for (const auto& [k, sum_count] : total) out[k] = sum_count.first / sum_count.second;
    return out;
}

nlohmann::json eval_objective(ModelSession& model, ObjectiveCall& objective, const std::vector<Example>& eval,
                              const StageConfig& sc, at::Device device, Communicator* comm) {
    nlohmann::json out = nlohmann::json::object();
    // On-policy objectives have no loss without sampling; their eval is the graders'.
    if (eval.empty() || objective.traits().data_shape == FT_DATA_COMPLETIONS) return out;
    at::NoGradGuard ng;
    model.set_training(false);
    objective.set_eval(true);
    objective.drain_metrics();
    auto batches = eval_batches(eval, sc.train.batch_size, objective.traits().data_shape, device);
    int64_t items = 0, examples = 0;
    for (const auto& b : batches) items += b.num_labels, examples += b.num_examples;  // of the whole eval set
    const bool sharded = comm && comm->connected();
    const auto [first, last] = sharded ? comm->share(batches.size()) : std::pair<size_t, size_t>{0, batches.size()};
    std::vector<double> losses(batches.size(), 0.0);  // each batch's share of the loss, in batch order
    for (size_t i = first; i < last; ++i)
        losses[i] = objective.loss(batches[i], std::max<int64_t>(items, 1), examples).item<double>();
    if (sharded) losses = comm->sum(losses, "eval loss sum");
    double sum = 0;
    for (double l : losses) sum += l;
    out["loss"] = sum;
    for (const auto& [k, v] : drain_metrics_of_all_ranks(objective, comm)) out[k] = v;
    objective.set_eval(false);
    return out;
}

}  // namespace fthost::host
