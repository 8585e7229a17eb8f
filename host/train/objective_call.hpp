// objective_call.hpp — one objective plugin instance as a stage uses it: its loss for a
// micro-batch, the run services it calls back (log-probs, label logits and named
// outputs of the policy, the reference and the teacher), and its metrics, kept apart
// for training windows and eval passes.
#pragma once

#include "config/run_config.hpp"
#include "data/batch_stream.hpp"
#include "distributed/communicator.hpp"
#include "model/autocast.hpp"
#include "model/model_session.hpp"
#include "config/host_api.hpp"
#include "registry/plugin_registry.hpp"
#include "train/reference_model.hpp"

#include <fthost/torch.hpp>

#include <map>
#include <string>

namespace fthost::host {

// Calls the objective plugin for one batch, and answers its requests for log-probs and
// logits of the policy, the reference and the teacher.
class ObjectiveCall {
public:
    ObjectiveCall(const PluginSection& obj, ModelSession& model);
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
        model_.take_auxiliary_loss();  // none left over from a forward outside a loss
        {
            AutocastScope autocast(model_.device(), bf16_);  // forward and loss; backward replays the dtypes
            check(vt_->loss(handle_, &run_, &fb, &out, &err), err);
        }
        current_ = nullptr;
        at::Tensor loss = take(out);
        // The policy's auxiliary loss (a mixture of experts' load balancing), as transformers
        // adds it to every forward's loss: averaged over the step's micro-batches.
        if (const at::Tensor aux = model_.take_auxiliary_loss(); aux.defined()) {
            run_.metric("auxiliary_loss", aux.detach().item<double>());
            loss = loss + aux.to(loss.scalar_type()) * auxiliary_weight_;
        }
        return loss;
    }
    // 1 / the micro-batches of a step over every rank.
    void set_auxiliary_weight(double w) { auxiliary_weight_ = w; }
    void set_bf16(bool on) { bf16_ = on; }
    // A host-side metric (rollout rewards, generation speed) in the training window.
    void host_metric(const std::string& name, double value) { run_.metric(name, value); }
    // Metrics reported from now on belong to the eval pass (kept apart from the
    // training window's).
    void set_eval(bool on) { in_eval_ = on; }
    // Objective metrics (of training or of eval) averaged since the last call.
    std::map<std::string, double> drain_metrics() {
        std::map<std::string, double> out;
        for (const auto& [n, sc] : drain_metric_sums()) out[n] = sc.first / sc.second;
        return out;
    }
    // The same as (sum, count) per metric, for combining the windows of several ranks.
    std::map<std::string, std::pair<double, double>> drain_metric_sums() {
        auto& m = metrics_[in_eval_];
        std::map<std::string, std::pair<double, double>> out;
        for (const auto& [n, s] : m.sum) out[n] = {s, m.count[n]};
        m = {};
        return out;
    }

private:
    bool bf16_ = false;
    double auxiliary_weight_ = 1.0;
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

// The objective's loss over the whole eval set (one per-token / per-example mean, as
// in training) and its metrics averaged over the eval batches; {} for on-policy
// objectives, whose eval is the graders'.
// The objective's metrics since the last drain (of training or of eval), averaged over
// every rank's micro-batches: the ranks' sums and counts are gathered on rank 0 (the one
// that writes them; the others get nothing). Without comm: this process's.
std::map<std::string, double> drain_metrics_of_all_ranks(ObjectiveCall& objective, Communicator* comm);

// With the ranks of a distributed run (comm), each rank computes its share of the batches:
// every rank gets the summed loss, rank 0 the metrics too.
nlohmann::json eval_objective(ModelSession& model, ObjectiveCall& objective, const std::vector<Example>& eval,
                              const StageConfig& sc, at::Device device, Communicator* comm = nullptr);

}  // namespace fthost::host
