// logprobs_bench — memory and time of one loss step's LM-head part (token log-probs of
// every target, their mean as the loss, backward into hidden states and head weight)
// computed unchunked (logits [N, V] in fp32, log_softmax, gather: what a naive
// trainer does) and chunked (host/train/chunked_logprobs.cpp). Memory: on CUDA the
// allocator's peak; on the CPU the peak resident set size above what the inputs hold.
// Each mode runs in its own process (the default runs both, re-executing itself), so
// one mode's freed memory cannot hide the other's peak.
//
//   fthost_logprobs_bench [--device cpu|cuda] [--tokens 8192] [--vocab 128256] [--hidden 256]
//                         [--mode both|chunked|unchunked]
#include "model/chunked_logprobs.hpp"
#include "train/process_memory.hpp"

#include <ATen/ATen.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Options {
    std::string device = "cpu", mode = "both";
    int64_t tokens = 8192, vocab = 128256, hidden = 256;
};

void sync(const at::Device& d) {
    if (d.is_cuda()) at::detail::getCUDAHooks().deviceSynchronize(d.has_index() ? d.index() : 0);
}

// Returns {peak bytes above the inputs, seconds}.
std::pair<double, double> run(const Options& o, bool chunked) {
    const at::Device device(o.device);
    at::manual_seed(1);
    const auto opts = at::TensorOptions().device(device);
    at::Tensor weight = (at::randn({o.vocab, o.hidden}, opts) * 0.02).set_requires_grad(true);
    at::Tensor hidden = at::randn({o.tokens, o.hidden}, opts).set_requires_grad(true);
    const at::Tensor targets = at::randint(0, o.vocab, {o.tokens}, opts.dtype(at::kLong));
    sync(device);
    fthost::host::reset_peak_rss();
    const int64_t rss_before = fthost::host::peak_rss_bytes();
    const c10::DeviceIndex index = device.has_index() ? device.index() : 0;
    if (device.is_cuda()) c10::getDeviceAllocator(at::kCUDA)->resetPeakStats(index);
    const auto t0 = std::chrono::steady_clock::now();
    const fthost::host::LmHead head = [&](const at::Tensor& h) { return at::linear(h, weight); };
    at::Tensor lp;
    if (chunked) {
        lp = fthost::host::chunked_token_logprobs(head, hidden, targets, 1.0,
                                                  fthost::host::logprob_chunk_rows(o.vocab));
    } else {
        const at::Tensor logits = head(hidden).to(at::kFloat);
        lp = at::log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    }
    (-lp.mean()).backward();
    sync(device);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double peak = 0;
    if (device.is_cuda()) {
        // The caching allocator's peak of allocated bytes (the inputs were allocated before the reset).
        const auto stats = c10::getDeviceAllocator(at::kCUDA)->getDeviceStats(index);
        peak = static_cast<double>(stats.allocated_bytes[0].peak) -
               static_cast<double>((weight.numel() + hidden.numel() * 1) * 4 + targets.numel() * 8);
    } else {
        peak = static_cast<double>(fthost::host::peak_rss_bytes() - rss_before);
    }
    return {peak, seconds};
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--device") o.device = v;
        else if (k == "--mode") o.mode = v;
        else if (k == "--tokens") o.tokens = std::stoll(v);
        else if (k == "--vocab") o.vocab = std::stoll(v);
        else if (k == "--hidden") o.hidden = std::stoll(v);
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (o.mode == "both") {
        // One process per mode: a fresh heap and a fresh peak for each.
        for (const char* mode : {"unchunked", "chunked"}) {
            std::string cmd = std::string("\"") + argv[0] + "\" --mode " + mode + " --device " + o.device + " --tokens " +
                              std::to_string(o.tokens) + " --vocab " + std::to_string(o.vocab) + " --hidden " +
                              std::to_string(o.hidden);
            if (std::system(cmd.c_str()) != 0) return 1;
        }
        return 0;
    }
    const auto [peak, seconds] = run(o, o.mode == "chunked");
    std::printf("%-9s device %s tokens %lld vocab %lld hidden %lld chunk_rows %lld: peak %.0f MB above inputs, %.2f s\n",
                o.mode.c_str(), o.device.c_str(), static_cast<long long>(o.tokens), static_cast<long long>(o.vocab),
                static_cast<long long>(o.hidden),
                static_cast<long long>(o.mode == "chunked" ? fthost::host::logprob_chunk_rows(o.vocab) : o.tokens),
                peak / 1e6, seconds);
    return 0;
}
