// toy_next_event — a test-only objective over a model's named outputs (ABI 1.6
// run_model_outputs): next event code cross-entropy from "type_logits" plus the squared
// error of the next log amount from "amount_pred", both over the steps that have a next
// event — a target that is no token. Each term is a mean over the effective batch's
// targets, reported as metrics type_nll and amount_mse.
#include <fthost/torch.hpp>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("amount_weight", FT_OPT_FLOAT, "1.0", "weight of the amount's squared error"),
};

class NextEvent {
public:
    NextEvent(const fthost::Host&, const fthost::Config& cfg) : amount_weight_(cfg.get_float("amount_weight")) {}

    at::Tensor loss(fthost::Run& run, const fthost::BatchView& batch) {
        const auto out = run.model_outputs();
        for (const char* name : {"type_logits", "amount_pred"})
            if (!out.count(name)) throw fthost::Error(std::string("the model has no named output '") + name + "'");
        const at::Tensor& logits = out.at("type_logits");
        const at::Tensor mask = batch.labels.ne(-100);
        const double n = static_cast<double>(std::max<int64_t>(1, batch.num_items_in_batch));
        const at::Tensor picked = at::log_softmax(logits.to(at::kFloat), -1)
                                      .gather(-1, batch.labels.clamp_min(0).unsqueeze(-1))
                                      .squeeze(-1);
        const at::Tensor nll = -(picked * mask).sum() / n;
        const at::Tensor err = (out.at("amount_pred") - batch.extra("next_amount")).pow(2) * batch.extra("next_mask");
        const at::Tensor mse = err.sum() / n;
        run.metric("type_nll", nll.detach() * n / std::max<double>(1.0, mask.sum().item<double>()));
        run.metric("amount_mse", mse.detach() * n / std::max<double>(1.0, batch.extra("next_mask").sum().item<double>()));
        return nll + amount_weight_ * mse;
    }

private:
    double amount_weight_;
};

}  // namespace

FTHOST_OBJECTIVE(toy_next_event, NextEvent, FT_LABELS_ALL, "toy_next_event", "0.1.0",
                 "test-only: next event code and amount from a model's named outputs", kOptions);
FTHOST_PLUGINS(toy_next_event)
