// gradient_reducer.hpp — the gradient all-reduce of a data-parallel step, overlapped with
// the backward pass as PyTorch's DDP overlaps it. The trainable parameters are laid out in
// buckets of at most bucket_mb, in reverse order (the order backward tends to produce
// their gradients); during the step's last backward on this rank each parameter's
// post-accumulate-grad hook marks it ready, and a bucket whose parameters are all ready
// starts its all-reduce while backward goes on. Buckets start strictly in order, so every
// rank issues the same collectives in the same order whatever order its gradients arrive
// in. finish() starts the buckets still waiting (a parameter with no gradient on this rank
// counts as zeros), waits for all, and writes the sums back into the gradients.
#pragma once

#include "distributed/communicator.hpp"

#include <ATen/ATen.h>

#include <memory>
#include <mutex>
#include <vector>

namespace fthost::host {

class GradientReducer {
public:
    GradientReducer(Communicator& comm, std::vector<at::Tensor> params, double bucket_mb);
    ~GradientReducer();  // removes the hooks
    GradientReducer(const GradientReducer&) = delete;
    GradientReducer& operator=(const GradientReducer&) = delete;

    // The next backward is this rank's last of the step: reduce as gradients become ready.
    void arm();
    // After that backward: every bucket reduced, the sums in the parameters' gradients.
    void finish();

    void on_ready(size_t param);  // from a parameter's hook

    size_t buckets() const { return buckets_.size(); }
    // How many buckets the last finish() found already started by the hooks during
    // backward: the overlapped part of the step's communication.
    size_t started_in_backward() const { return started_in_backward_; }

private:
    struct Bucket {
        std::vector<size_t> params;
        size_t ready = 0;
        at::Tensor flat;
        std::unique_ptr<Communicator::Pending> pending;
    };
    void start(size_t bucket);

    Communicator& comm_;
    std::vector<at::Tensor> params_;
    std::vector<size_t> bucket_of_;  // per parameter
    std::vector<char> seen_;         // per parameter: ready in the armed backward
    std::vector<Bucket> buckets_;
    size_t next_ = 0;  // the next bucket to start
    size_t started_in_backward_ = 0;
    bool armed_ = false;
    std::mutex mutex_;  // hooks run on the autograd engine's thread for the device
};

}  // namespace fthost::host
