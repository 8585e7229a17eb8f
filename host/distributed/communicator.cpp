// The one file that includes c10d. Gloo's headers come from Debian's libgloo-dev (the
// PyPI wheel ships c10d's but not Gloo's); the Gloo code itself is the copy inside
// libtorch_cpu, never Debian's libgloo.so. ProcessGroupNCCL (inside libtorch_cuda) is
// compiled in only where the build has CUDA, with the wheel's own nccl.h.
#include "distributed/communicator.hpp"

#include <fthost/plugin.hpp>

#include <torch/csrc/distributed/c10d/HashStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef FTHOST_WITH_CUDA
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace fthost::host {

struct Communicator::Impl {
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<c10d::Backend> backend;
    at::Device device{at::kCPU};  // where the small tensors of sum() live (CUDA for NCCL)
    int64_t bucket_bytes = 25 << 20;
    std::chrono::milliseconds timeout{300000};
    uint64_t gathers = 0;  // gather_to_leader calls so far: each one's store keys are new
};

namespace {

using Clock = std::chrono::steady_clock;

// A c10d error's message without the C++ stack trace c10 appends to it.
std::string message_of(const std::exception& e) {
    std::string msg = e.what();
    if (const size_t trace = msg.find("\nException raised from"); trace != std::string::npos) msg.resize(trace);
    return msg;
}

c10::intrusive_ptr<c10d::Store> rendezvous(const World& w, std::chrono::milliseconds timeout) {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(w.master_port);
    // torchrun's agent (or fthost's launcher) already serves the store; else rank 0 does.
    o.isServer = !w.agent_store && w.rank == 0;
    o.numWorkers = w.agent_store ? std::nullopt : std::optional<size_t>(static_cast<size_t>(w.size));
    o.waitWorkers = !w.agent_store;
    o.timeout = timeout;
    o.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(w.master_addr, o);
    // Under an agent, each restart of the workers rendezvous anew (torchrun's layout).
    const std::string prefix = w.agent_store ? "/worker/attempt_" + std::to_string(w.restart_count) : "fthost";
    return c10::make_intrusive<c10d::PrefixStore>(prefix, tcp);
}

c10::intrusive_ptr<c10d::Backend> gloo(const c10::intrusive_ptr<c10d::Store>& store, const World& w,
                                       std::chrono::milliseconds timeout) {
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    // As torch.distributed does: GLOO_SOCKET_IFNAME picks the interface, else the address
    // this machine's hostname resolves to (loopback when it resolves to none).
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    o->threads = 2;
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, w.rank, w.size, o);
}

c10::intrusive_ptr<c10d::Backend> nccl(const c10::intrusive_ptr<c10d::Store>& store, const World& w,
                                       std::chrono::milliseconds timeout) {
#ifdef FTHOST_WITH_CUDA
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, w.rank, w.size, o);
#else
    (void)store, (void)w, (void)timeout;
    throw Error("[run.distributed] backend = \"nccl\" needs a CUDA build of fthost; this one is CPU-only (use gloo)",
                FT_ERR_CONFIG);
#endif
}

// Consecutive runs of tensors with one dtype and device, each at most `bytes` (a tensor
// larger than that is a bucket of its own).
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor>& tensors, int64_t bytes) {
    std::vector<std::vector<at::Tensor>> out;
    int64_t filled = 0;
    for (const auto& t : tensors) {
        const int64_t size = static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size());
        const bool fits = !out.empty() && out.back().front().scalar_type() == t.scalar_type() &&
                          out.back().front().device() == t.device() && filled + size <= bytes;
        if (!fits) {
            out.emplace_back();
            filled = 0;
        }
        out.back().push_back(t);
        filled += size;
    }
    return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& bucket) {
    std::vector<at::Tensor> flat;
    flat.reserve(bucket.size());
    for (const auto& t : bucket) flat.push_back(t.reshape({-1}));
    return at::cat(flat);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& bucket) {
    int64_t offset = 0;
    for (const auto& t : bucket) {
        const int64_t n = t.numel();
        t.copy_(flat.narrow(0, offset, n).view(t.sizes()));
        offset += n;
    }
}

}  // namespace

Communicator::Communicator(World world, std::unique_ptr<Impl> impl, std::string backend)
    : world_(std::move(world)), impl_(std::move(impl)), backend_(std::move(backend)) {}

Communicator::~Communicator() = default;

std::string Communicator::self_test(const std::string& backend, at::Device device) {
    try {
        World alone;
        alone.rank = 0;
        alone.size = 1;
        const auto timeout = std::chrono::milliseconds(30000);
        auto store = c10::make_intrusive<c10d::HashStore>();
        auto group = backend == "nccl" ? nccl(store, alone, timeout) : gloo(store, alone, timeout);
        std::vector<at::Tensor> t = {at::arange(4, at::TensorOptions(at::kFloat).device(device))};
        auto work = group->allreduce(t);
        if (!work->wait(timeout)) return "the all-reduce did not finish";
        if (!at::equal(t[0].to(at::kCPU), at::arange(4, at::kFloat))) return "the all-reduce gave wrong values";
        return "";
    } catch (const std::exception& e) {
        return message_of(e);
    }
}

std::unique_ptr<Communicator> Communicator::connect(const World& world, const DistributedConfig& cfg, at::Device device) {
    const bool measure_alone = world.launcher != "none" && cfg.backend != "auto" && !world.master_addr.empty();
    if (!world.distributed() && !measure_alone) return std::unique_ptr<Communicator>(new Communicator(world, nullptr, "none"));
    std::string backend = cfg.backend;
    if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
    if (backend == "nccl" && !device.is_cuda())
        throw Error("[run.distributed] backend = \"nccl\" needs [run] device = \"cuda\"; on a CPU use gloo", FT_ERR_CONFIG);
    auto impl = std::make_unique<Impl>();
    impl->timeout = std::chrono::milliseconds(static_cast<int64_t>(cfg.timeout_s * 1000));
    impl->bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(cfg.bucket_mb * (1 << 20)));
    impl->device = backend == "nccl" ? device : at::Device(at::kCPU);
    const std::string where = "rank " + std::to_string(world.rank) + " of " + std::to_string(world.size);
    try {
        impl->store = rendezvous(world, impl->timeout);
    } catch (const std::exception& e) {
        throw Error(where + ": no rendezvous at " + world.master_addr + ":" + std::to_string(world.master_port) + " within " +
                        std::to_string(cfg.timeout_s) + " s ([run.distributed] timeout_s): " + message_of(e),
                    FT_ERR_RUNTIME);
    }
    try {
        impl->backend = backend == "nccl" ? nccl(impl->store, world, impl->timeout) : gloo(impl->store, world, impl->timeout);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(where + ": cannot start the " + backend + " process group: " + message_of(e), FT_ERR_RUNTIME);
    }
    return std::unique_ptr<Communicator>(new Communicator(world, std::move(impl), backend));
}

void Communicator::fail(const char* what, const std::exception& e) const {
    const std::string msg = message_of(e);
    throw Error("rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": the " + what +
                    (context_.empty() ? "" : " of " + context_) + " failed: " + msg +
                    " (another rank stopped or did not arrive within [run.distributed] timeout_s = " +
                    std::to_string(impl_->timeout.count() / 1000) + " s: see its output)",
                FT_ERR_RUNTIME);
}

template <class F>
void Communicator::timed(const char* what, F&& body) {
    const auto t0 = Clock::now();
    try {
        body();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail(what, e);
    }
    seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
}

void Communicator::all_reduce_sum(const std::vector<at::Tensor>& tensors, const char* what) {
    if (!impl_ || tensors.empty()) return;
    at::NoGradGuard no_grad;  // parameters are written in place
    timed(what, [&] {
        // Every bucket's collective is started before the first is waited for.
        std::vector<std::pair<std::vector<at::Tensor>, std::vector<at::Tensor>>> pending;
        std::vector<c10::intrusive_ptr<c10d::Work>> works;
        for (auto& bucket : buckets(tensors, impl_->bucket_bytes)) {
            std::vector<at::Tensor> flat = {bucket.size() == 1 && bucket[0].is_contiguous() ? bucket[0] : flatten(bucket)};
            c10d::AllreduceOptions o;
            o.timeout = impl_->timeout;
            works.push_back(impl_->backend->allreduce(flat, o));
            pending.emplace_back(std::move(bucket), std::move(flat));
        }
        for (size_t i = 0; i < works.size(); ++i) {
            works[i]->wait(impl_->timeout);
            auto& [bucket, flat] = pending[i];
            if (!flat[0].is_same(bucket[0])) unflatten(flat[0], bucket);
        }
    });
}

struct Communicator::Pending::Work {
    c10::intrusive_ptr<c10d::Work> work;
    std::chrono::milliseconds timeout;
};

Communicator::Pending::Pending(Communicator& comm, std::unique_ptr<Work> work, const char* what)
    : comm_(comm), work_(std::move(work)), what_(what) {}

Communicator::Pending::~Pending() = default;

void Communicator::Pending::wait() {
    if (!work_) return;
    comm_.timed(what_, [&] { work_->work->wait(work_->timeout); });
    work_.reset();
}

std::unique_ptr<Communicator::Pending> Communicator::start_all_reduce_sum(const at::Tensor& flat, const char* what) {
    auto work = std::make_unique<Pending::Work>();
    if (impl_) {
        work->timeout = impl_->timeout;
        timed(what, [&] {
            std::vector<at::Tensor> tensors = {flat};
            c10d::AllreduceOptions o;
            o.timeout = impl_->timeout;
            work->work = impl_->backend->allreduce(tensors, o);
        });
    } else {
        work.reset();  // nothing to wait for
    }
    return std::unique_ptr<Pending>(new Pending(*this, std::move(work), what));
}

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int root, const char* what) {
    if (!impl_ || tensors.empty()) return;
    at::NoGradGuard no_grad;  // parameters are written in place
    timed(what, [&] {
        for (auto& bucket : buckets(tensors, impl_->bucket_bytes)) {
            std::vector<at::Tensor> flat = {bucket.size() == 1 && bucket[0].is_contiguous() ? bucket[0] : flatten(bucket)};
            c10d::BroadcastOptions o;
            o.rootRank = root;
            o.timeout = impl_->timeout;
            impl_->backend->broadcast(flat, o)->wait(impl_->timeout);
            if (!flat[0].is_same(bucket[0])) unflatten(flat[0], bucket);
        }
    });
}

void Communicator::send(const std::vector<at::Tensor>& tensors, int to, const char* what) {
    if (!impl_ || tensors.empty()) return;
    at::NoGradGuard no_grad;
    timed(what, [&] {
        for (auto& bucket : buckets(tensors, impl_->bucket_bytes)) {
            std::vector<at::Tensor> flat = {flatten(bucket)};
            impl_->backend->send(flat, to, 0)->wait(impl_->timeout);
        }
    });
}

void Communicator::receive(const std::vector<at::Tensor>& tensors, int from, const char* what) {
    if (!impl_ || tensors.empty()) return;
    at::NoGradGuard no_grad;
    timed(what, [&] {
        for (auto& bucket : buckets(tensors, impl_->bucket_bytes)) {
            std::vector<at::Tensor> flat = {flatten(bucket)};
            impl_->backend->recv(flat, from, 0)->wait(impl_->timeout);
            unflatten(flat[0], bucket);
        }
    });
}

std::vector<double> Communicator::sum(const std::vector<double>& values, const char* what) {
    if (!impl_ || values.empty()) return values;
    at::Tensor t = at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(impl_->device);
    all_reduce_sum({t}, what);
    t = t.cpu();
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

void Communicator::barrier(const char* what) {
    if (!impl_) return;
    timed(what, [&] {
        c10d::BarrierOptions o;
        o.timeout = impl_->timeout;
        impl_->backend->barrier(o)->wait(impl_->timeout);
    });
}

std::vector<std::string> Communicator::gather_to_leader(const std::vector<std::string>& values, const char* what) {
    if (!impl_) return values;
    // One store value per rank: each string as an 8-byte length and its bytes.
    std::vector<uint8_t> mine;
    for (const auto& v : values) {
        const uint64_t n = v.size();
        const auto* len = reinterpret_cast<const uint8_t*>(&n);
        mine.insert(mine.end(), len, len + sizeof n);
        mine.insert(mine.end(), v.begin(), v.end());
    }
    std::vector<std::string> out;
    const std::string key = "fthost/gather/" + std::to_string(impl_->gathers++) + "/";
    timed(what, [&] {
        if (!leader()) {
            impl_->store->set(key + std::to_string(rank()), mine);
            return;
        }
        out = values;
        for (int r = 1; r < size(); ++r) {
            const std::string k = key + std::to_string(r);
            impl_->store->wait({k}, impl_->timeout);
            const std::vector<uint8_t> bytes = impl_->store->get(k);
            impl_->store->deleteKey(k);
            for (size_t at = 0; at + sizeof(uint64_t) <= bytes.size();) {
                uint64_t n = 0;
                std::memcpy(&n, bytes.data() + at, sizeof n);
                at += sizeof n;
                out.emplace_back(reinterpret_cast<const char*>(bytes.data() + at), n);
                at += n;
            }
        }
    });
    return out;
}

std::vector<nlohmann::json> Communicator::gather_to_leader(const nlohmann::json& value, const char* what) {
    if (!impl_) return {value};
    const std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::vector<nlohmann::json> out;
    for (const auto& s : gather_to_leader(std::vector<std::string>{text}, what)) out.push_back(nlohmann::json::parse(s));
    return out;
}

double Communicator::take_seconds() {
    const double s = seconds_;
    seconds_ = 0;
    return s;
}

}  // namespace fthost::host
