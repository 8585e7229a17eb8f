#include "generate/decode_graph.hpp"

#include <fthost/torch.hpp>

#ifdef FTHOST_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <mutex>
#endif

namespace fthost::host {

#ifdef FTHOST_WITH_CUDA

namespace {

// One stream per device for every decode graph of the process, taken from LibTorch's
// pool once: cuBLAS keeps a workspace per (handle, stream), and a fresh stream per graph
// would allocate a new one inside each capture.
c10::cuda::CUDAStream decode_stream(c10::DeviceIndex device) {
    static std::mutex mu;
    static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
    std::lock_guard<std::mutex> lock(mu);
    auto it = streams.find(device);
    if (it == streams.end()) it = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
    return it->second;
}

}  // namespace

struct DecodeGraph::Impl {
    ModelSession& model;
    ft_kv_cache* cache;
    int64_t steps;                  // calls allowed: the cache's room after the prefill
    c10::cuda::CUDAStream side;     // where the warm-up, the capture and the replays run
    at::Tensor packed;              // [3, rows, 1] device: input, position, sequence ids
    HostBatch in;                   // views of `packed`: the graph's fixed inputs
    at::cuda::CUDAGraph graph;
    at::Tensor out;                 // the graph's output: logits [rows, V]
    int64_t calls = 0, replays = 0;
    bool failed = false;

    Impl(ModelSession& m, ft_kv_cache* c, int64_t s, c10::cuda::CUDAStream st) : model(m), cache(c), steps(s), side(st) {}

    at::Tensor step() { return model.logits(model.hidden_states_cached(cache, in).select(1, 0)); }

    // Records the step (nothing runs); the stream must be `side`.
    void capture() {
        graph.capture_begin();
        try {
            out = step();
        } catch (const std::exception& e) {
            failed = true;
            try {
                graph.capture_end();  // leaves the stream out of capture mode
            } catch (...) {
            }
            throw Error(std::string("capturing the decode step in a CUDA graph failed: ") + e.what() +
                        ". The model plugin declares its decode step capturable (graph_safe_decode) but it is "
                        "not; this process's CUDA state is not reliable after a failed capture. Rerun with "
                        "[run] cuda_graphs = false (fthost generate --no-cuda-graphs).");
        }
        graph.capture_end();
    }
};

bool DecodeGraph::available(const ModelSession& model) { return model.device().is_cuda(); }

DecodeGraph::DecodeGraph(ModelSession& model, ft_kv_cache* cache, int64_t rows, int64_t steps) {
    if (!available(model)) throw Error("CUDA graphs need a CUDA device (the model is on " + model.device().str() + ")");
    const c10::DeviceIndex device = model.device().has_index() ? model.device().index() : c10::cuda::current_device();
    impl_ = std::make_unique<Impl>(model, cache, steps, decode_stream(device));
    Impl& g = *impl_;
    g.packed = at::zeros({3, rows, 1}, at::TensorOptions().dtype(at::kLong).device(model.device()));
    g.in.input_ids = g.packed[0];
    g.in.position_ids = g.packed[1];
    g.in.sequence_ids = g.packed[2];
    g.in.labels = at::full({rows, 1}, -100, g.packed.options());
}

at::Tensor DecodeGraph::logits(const HostBatch& step) {
    Impl& g = *impl_;
    if (g.failed) throw Error("this decode graph's capture failed; it cannot replay");
    if (g.calls >= g.steps)
        throw Error("decode step " + std::to_string(g.calls + 1) + " is past the cache's reserved " +
                    std::to_string(g.steps) + " (a host bug: the generation was sized wrongly)");
    // The side stream starts after what the current stream has queued (the prefill), and
    // the current stream reads the logits only after the side stream wrote them.
    const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(g.side.device_index());
    at::cuda::CUDAEvent queued;
    queued.record(current);
    queued.block(g.side);
    {
        c10::cuda::CUDAStreamGuard on_side(g.side);
        // One copy of the three id columns (pageable: the copy waits for the host data).
        g.packed.copy_(at::stack({step.input_ids, step.position_ids, step.sequence_ids}));
        if (g.calls == 0) {
            g.out = g.step();  // eager: kernels and the side stream's cuBLAS workspace warm up
        } else {
            if (g.calls == 1) g.capture();  // recorded, not run: the replay below runs it
            g.graph.replay();
            ++g.replays;
        }
    }
    ++g.calls;
    at::cuda::CUDAEvent done;
    done.record(g.side);
    done.block(current);
    return g.out;
}

#else  // a build without CUDA

struct DecodeGraph::Impl {
    int64_t replays = 0;
};

bool DecodeGraph::available(const ModelSession&) { return false; }

DecodeGraph::DecodeGraph(ModelSession&, ft_kv_cache*, int64_t, int64_t) {
    throw Error("this fthost was built without CUDA: CUDA graphs are not available");
}

at::Tensor DecodeGraph::logits(const HostBatch&) { throw Error("this fthost was built without CUDA"); }

#endif

DecodeGraph::~DecodeGraph() = default;

int64_t DecodeGraph::replays() const { return impl_->replays; }

}  // namespace fthost::host
