#include "generate/decode_graph.hpp"

#include <fthost/torch.hpp>

#ifdef FTHOST_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace fthost::host {

#ifdef FTHOST_WITH_CUDA

struct DecodeGraph::Impl {
    ModelSession& model;
    ft_kv_cache* cache;
    HostBatch in;  // the graph's inputs: fixed device buffers, refilled before each step
    at::cuda::CUDAGraph graph;
    at::Tensor out;  // the graph's output: logits [rows, V]
    int64_t calls = 0, replays = 0;

    Impl(ModelSession& m, ft_kv_cache* c) : model(m), cache(c) {}

    at::Tensor step() { return model.logits(model.hidden_states_cached(cache, in).select(1, 0)); }

    void capture() {
        // The side stream must see the eager step and this step's inputs finished.
        c10::cuda::device_synchronize();
        c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, model.device().index());
        c10::cuda::CUDAStreamGuard on_side(side);
        graph.capture_begin();
        try {
            out = step();
            graph.capture_end();
        } catch (const std::exception& e) {
            try {
                graph.capture_end();  // leave the stream out of capture mode
            } catch (...) {
            }
            // The cache has recorded a step that never ran: this generation cannot go on.
            throw Error(std::string("capturing the decode step in a CUDA graph failed: ") + e.what() +
                        " (set cuda_graphs = false in the stage's [stage.rollout] or pass --no-cuda-graphs)");
        }
    }
};

bool DecodeGraph::available(const ModelSession& model) { return model.device().is_cuda(); }

DecodeGraph::DecodeGraph(ModelSession& model, ft_kv_cache* cache, int64_t rows) : impl_(std::make_unique<Impl>(model, cache)) {
    if (!available(model)) throw Error("CUDA graphs need a CUDA device (the model is on " + model.device().str() + ")");
    const auto longs = at::TensorOptions().dtype(at::kLong).device(model.device());
    HostBatch& in = impl_->in;
    in.input_ids = at::zeros({rows, 1}, longs);
    in.position_ids = at::zeros({rows, 1}, longs);
    in.sequence_ids = at::full({rows, 1}, -1, longs);
    in.labels = at::full({rows, 1}, -100, longs);
}

at::Tensor DecodeGraph::logits(const HostBatch& step) {
    Impl& g = *impl_;
    g.in.input_ids.copy_(step.input_ids);
    g.in.position_ids.copy_(step.position_ids);
    g.in.sequence_ids.copy_(step.sequence_ids);
    if (g.calls++ == 0) return g.step();  // eager: kernels, cuBLAS workspaces and caches warm up
    if (g.calls == 2) g.capture();         // recorded, not run: the replay below runs it
    g.graph.replay();
    ++g.replays;
    return g.out;
}

#else  // a build without CUDA

struct DecodeGraph::Impl {
    int64_t replays = 0;
};

bool DecodeGraph::available(const ModelSession&) { return false; }

DecodeGraph::DecodeGraph(ModelSession&, ft_kv_cache*, int64_t) {
    throw Error("this fthost was built without CUDA: CUDA graphs are not available");
}

at::Tensor DecodeGraph::logits(const HostBatch&) { throw Error("this fthost was built without CUDA"); }

#endif

DecodeGraph::~DecodeGraph() = default;

int64_t DecodeGraph::replays() const { return impl_->replays; }

}  // namespace fthost::host
