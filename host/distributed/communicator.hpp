// communicator.hpp — the collectives a data-parallel stage needs, over PyTorch's own
// distributed engine (c10d: a TCPStore rendezvous, ProcessGroupGloo on CPUs,
// ProcessGroupNCCL on GPUs). c10d is included only by communicator.cpp: nothing else in
// the host, and no plugin, sees it. A world of one process gets a communicator whose
// collectives return at once, so the trainer has one code path.
//
// Every rank must call the same collectives in the same order. A collective that fails
// (a rank died, or did not arrive within [run.distributed] timeout_s) throws
// fthost::Error naming this rank, the collective and the context set by the caller
// (the stage and step).
#pragma once

#include "config/run_config.hpp"
#include "distributed/world.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace fthost::host {

class Communicator {
public:
    // Connects to the world's other ranks (a rendezvous over the TCPStore at
    // master_addr:master_port), or — a world of one — to nobody, unless a launcher
    // started it and [run.distributed] names a backend (not "auto").
    static std::unique_ptr<Communicator> connect(const World& world, const DistributedConfig& cfg, at::Device device);
    // `fthost doctor`: makes a one-process group of `backend` ("gloo", or "nccl" on a CUDA
    // device) over an in-memory store and all-reduces a tensor through it. "" when that
    // works, else what failed.
    static std::string self_test(const std::string& backend, at::Device device);
    ~Communicator();
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    int rank() const { return world_.rank; }
    int size() const { return world_.size; }
    const World& world() const { return world_; }
    bool leader() const { return world_.rank == 0; }  // the one rank that writes the run directory
    // A process group exists: more than one rank, or one rank started by a launcher with an
    // explicit backend (to measure a backend on one GPU). Collectives run only then.
    bool connected() const { return impl_ != nullptr; }
    const std::string& backend() const { return backend_; }

    // What the next collectives belong to, named in their errors ("stage 'sft' step 12").
    void set_context(std::string context) { context_ = std::move(context); }

    // Sums each tensor over the ranks, in place. Tensors of one dtype and device are
    // flattened into buffers of at most bucket_mb, one collective per buffer.
    void all_reduce_sum(const std::vector<at::Tensor>& tensors, const char* what);
    // A sum over the ranks started now and finished by wait(): `flat` (one contiguous
    // tensor) is summed in place. Collectives start in the order they are called, on every
    // rank alike.
    class Pending {
    public:
        ~Pending();
        void wait();  // throws like the blocking collectives
    private:
        friend class Communicator;
        struct Work;
        Pending(Communicator& comm, std::unique_ptr<Work> work, const char* what);
        Communicator& comm_;
        std::unique_ptr<Work> work_;
        const char* what_;
    };
    std::unique_ptr<Pending> start_all_reduce_sum(const at::Tensor& flat, const char* what);

    // Every rank's tensors become root's, in place (bucketed the same way).
    void broadcast(const std::vector<at::Tensor>& tensors, int root, const char* what);
    // Point to point: `to` receives, into tensors of the same shapes, what this rank sends
    // (bucketed like the collectives). Both sides name each other.
    void send(const std::vector<at::Tensor>& tensors, int to, const char* what);
    void receive(const std::vector<at::Tensor>& tensors, int from, const char* what);
    // Element-wise sums of a few numbers (as float64).
    std::vector<double> sum(const std::vector<double>& values, const char* what);
    void barrier(const char* what);
    // Rank 0 receives every rank's value, in rank order; the others receive nothing.
    std::vector<nlohmann::json> gather_to_leader(const nlohmann::json& value, const char* what);
    // The same for strings of any bytes (generated texts need not be UTF-8).
    std::vector<std::string> gather_to_leader(const std::vector<std::string>& values, const char* what);

    // This rank's contiguous share [first, second) of n items (all of them when alone).
    std::pair<size_t, size_t> share(size_t n) const {
        return {n * static_cast<size_t>(rank()) / static_cast<size_t>(size()),
                n * static_cast<size_t>(rank() + 1) / static_cast<size_t>(size())};
    }

    // Seconds spent in collectives since the last call (communication time of a step).
    double take_seconds();

private:
    struct Impl;
    Communicator(World world, std::unique_ptr<Impl> impl, std::string backend);
    [[noreturn]] void fail(const char* what, const std::exception& e) const;
    template <class F>
    void timed(const char* what, F&& body);

    World world_;
    std::unique_ptr<Impl> impl_;  // null for a world of one
    std::string backend_;
    std::string context_;
    double seconds_ = 0;
};

}  // namespace fthost::host
