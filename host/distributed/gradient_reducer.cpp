#include "distributed/gradient_reducer.hpp"

#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

namespace fthost::host {
namespace {

struct ReadyHook : torch::autograd::PostAccumulateGradHook {
    ReadyHook(GradientReducer* r, size_t i) : reducer(r), index(i) {}
    void operator()(const torch::autograd::Variable&) override { reducer->on_ready(index); }
    GradientReducer* reducer;
    size_t index;
};

}  // namespace

GradientReducer::GradientReducer(Communicator& comm, std::vector<at::Tensor> params, double bucket_mb)
    : comm_(comm), params_(std::move(params)), bucket_of_(params_.size()), seen_(params_.size(), 0) {
    const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20)));
    int64_t filled = 0;
    for (size_t k = params_.size(); k-- > 0;) {  // last parameter first
        const at::Tensor& p = params_[k];
        const int64_t bytes = static_cast<int64_t>(p.numel()) * static_cast<int64_t>(p.element_size());
        const bool fits = !buckets_.empty() && filled + bytes <= cap &&
                          params_[buckets_.back().params.front()].scalar_type() == p.scalar_type() &&
                          params_[buckets_.back().params.front()].device() == p.device();
        if (!fits) {
            buckets_.emplace_back();
            filled = 0;
        }
        buckets_.back().params.push_back(k);
        bucket_of_[k] = buckets_.size() - 1;
        filled += bytes;
    }
    for (size_t k = 0; k < params_.size(); ++k)
        torch::autograd::impl::set_post_acc_grad_hooks(params_[k], std::make_unique<ReadyHook>(this, k));
}

GradientReducer::~GradientReducer() {
    for (const auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void GradientReducer::arm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
    next_ = 0;
    std::fill(seen_.begin(), seen_.end(), 0);
    for (auto& b : buckets_) b.ready = 0, b.flat = at::Tensor(), b.pending.reset();
}

void GradientReducer::on_ready(size_t param) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!armed_ || seen_[param]) return;
    seen_[param] = 1;
    ++buckets_[bucket_of_[param]].ready;
    while (next_ < buckets_.size() && buckets_[next_].ready == buckets_[next_].params.size()) start(next_++);
}

void GradientReducer::start(size_t bucket) {
    at::NoGradGuard no_grad;
    Bucket& b = buckets_[bucket];
    std::vector<at::Tensor> flat;
    for (size_t k : b.params) {
        const at::Tensor& p = params_[k];
        flat.push_back(p.grad().defined() ? p.grad().reshape({-1}) : at::zeros({p.numel()}, p.options()));
    }
    b.flat = flat.size() == 1 ? flat[0].clone() : at::cat(flat);
    b.pending = comm_.start_all_reduce_sum(b.flat, "gradient all-reduce");
}

void GradientReducer::finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    started_in_backward_ = next_;
    while (next_ < buckets_.size()) start(next_++);
    at::NoGradGuard no_grad;
    for (auto& b : buckets_) {
        b.pending->wait();
        int64_t offset = 0;
        for (size_t k : b.params) {
            at::Tensor p = params_[k];
            const at::Tensor sum = b.flat.narrow(0, offset, p.numel()).view(p.sizes());
            if (p.grad().defined()) p.mutable_grad().copy_(sum);
            else p.mutable_grad() = sum.clone();
            offset += p.numel();
        }
        b.flat = at::Tensor();
        b.pending.reset();
    }
}

}  // namespace fthost::host
