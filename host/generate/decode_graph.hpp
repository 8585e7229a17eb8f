// decode_graph.hpp — one decode step ([B, 1] new tokens through the model and its LM
// head) recorded once in a CUDA graph and replayed for every later token of the batch.
//
// Why only decode: a decode step is a few hundred small kernels whose launch cost, not
// their arithmetic, sets the time per token at small batch; replaying them as one graph
// removes that cost. A training step at sequence 2048 is a few large GEMMs per layer,
// where launches are a rounding error — graphs would buy nothing there and constrain
// shapes (packing changes them every step).
//
// Requires a cache reserved for the whole generation (ModelSession::reserve_kv_cache:
// the plugin's promise that a decode step reads its write position from device state),
// a CUDA device, and a build with CUDA. Everything runs on one side stream per device
// (capture cannot use the default stream; one stream keeps one cuBLAS workspace): the
// first call runs eagerly there (it warms up kernels and that stream's workspace
// outside any graph), the second captures, every later one replays. The graph lives for
// one batch of one generation: the adapters' state cannot change under it.
#pragma once

#include "model/model_session.hpp"

#include <memory>

namespace fthost::host {

class DecodeGraph {
public:
    // Fewer decode steps than this do not repay a capture (a device synchronisation and
    // the recording, about as long as a few eager steps).
    static constexpr int64_t kMinSteps = 8;

    // Whether this build and `model`'s device can replay decode steps.
    static bool available(const ModelSession& model);

    // For a cache of `rows` rows that `model.reserve_kv_cache` has sized with room for
    // `steps` more tokens per row after the prefill; the cache must outlive this object
    // and see no other forward while it is in use.
    DecodeGraph(ModelSession& model, ft_kv_cache* cache, int64_t rows, int64_t steps);
    ~DecodeGraph();
    DecodeGraph(const DecodeGraph&) = delete;
    DecodeGraph& operator=(const DecodeGraph&) = delete;

    // Appends one token per row (`step`: [rows, 1] input, position and sequence ids on
    // the CPU) to the cache and returns the next-token logits [rows, V]. The tensor is
    // the graph's output buffer: read it before the next call. More than `steps` calls,
    // or a call after a failed capture, is an error.
    at::Tensor logits(const HostBatch& step);

    int64_t replays() const;  // steps served by replaying the graph (for stats and tests)

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fthost::host
