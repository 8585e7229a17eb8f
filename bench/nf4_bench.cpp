// nf4_bench — NF4 kernels on one device: checks the device's results against the CPU
// reference (bit-identical codes, absmax and dequantised weights on fresh random
// weights), then times dequantisation (GB/s over the bytes it must move) and
// nf4_linear against a plain linear with the weight already in the compute dtype.
// Timing: warm-up, then the median of --repeat runs, synchronising the device around
// each (CUDA) — bench/gpu_nf4.sh runs it on a GPU machine.
//
//   fthost_nf4_bench [--device cuda|cpu] [--tokens N] [--repeat N] [--small]
#include <fthost/nf4.hpp>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

void sync(const at::Device& d) {
    if (d.is_cuda()) at::detail::getCUDAHooks().deviceSynchronize(d.has_index() ? d.index() : 0);
}

double median_ms(const at::Device& d, int repeat, const std::function<void()>& f) {
    for (int i = 0; i < 3; ++i) f();  // warm-up: module load, handles, allocator
    std::vector<double> ms;
    for (int i = 0; i < repeat; ++i) {
        sync(d);
        const auto t0 = std::chrono::steady_clock::now();
        f();
        sync(d);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    std::string device_name = "cuda";
    int64_t tokens = 4096;
    int repeat = 20;
    bool small = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--device" && i + 1 < argc) device_name = argv[++i];
        else if (a == "--tokens" && i + 1 < argc) tokens = std::stoll(argv[++i]);
        else if (a == "--repeat" && i + 1 < argc) repeat = std::stoi(argv[++i]);
        else if (a == "--small") small = true;
        else {
            std::fprintf(stderr, "usage: fthost_nf4_bench [--device cuda|cpu] [--tokens N] [--repeat N] [--small]\n");
            return 2;
        }
    }
    if (device_name == "cuda" && !at::hasCUDA()) {
        std::fprintf(stderr, "fthost_nf4_bench: no CUDA device here (use --device cpu for a dry run)\n");
        return 1;
    }
    const at::Device dev(device_name);
    const at::ScalarType cdt = dev.is_cuda() ? at::kBFloat16 : at::kFloat;
    // Llama-7B's attention and MLP projection shapes; --small: a dry-run size.
    std::vector<std::pair<int64_t, int64_t>> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    if (small) shapes = {{256, 512}, {512, 256}}, tokens = std::min<int64_t>(tokens, 64);
    int failures = 0;
    std::printf("%-14s %10s %10s %9s %12s %12s %8s\n", "weight", "deq ms", "deq GB/s", "check", "nf4_linear", "linear", "ratio");
    for (const auto& [out, in] : shapes) {
        at::manual_seed(out * 31 + in);
        const at::Tensor w = at::randn({out, in}) * 0.02;
        // Correctness: the device's quantisation and dequantisation equal the CPU reference.
        const auto ref = fthost::Nf4Weight::quantize(w, true);
        const auto q = fthost::Nf4Weight::quantize(w.to(dev), true);
        const bool same = at::equal(q.packed().cpu(), ref.packed()) && at::equal(q.absmax().cpu(), ref.absmax()) &&
                          at::equal(q.dequantize(cdt).cpu(), ref.dequantize(cdt));
        failures += same ? 0 : 1;
        // Dequantisation: reads n/2 code bytes + n/64 absmax bytes (+ scales), writes n outputs.
        const double n = static_cast<double>(w.numel());
        const double bytes = n / 2 + n / 64 + n * static_cast<double>(c10::elementSize(cdt));
        const double deq = median_ms(dev, repeat, [&] { (void)q.dequantize(cdt); });
        // Matmul: 4-bit weight dequantised on the fly vs the weight already in cdt.
        const at::Tensor x = at::randn({tokens, in}, at::TensorOptions().device(dev).dtype(cdt));
        const at::Tensor wc = w.to(dev).to(cdt);
        const double lin4 = median_ms(dev, repeat, [&] { (void)q.linear(x, at::Tensor()); });
        const double lin = median_ms(dev, repeat, [&] { (void)at::linear(x, wc); });
        char name[32];
        std::snprintf(name, sizeof name, "%lldx%lld", static_cast<long long>(out), static_cast<long long>(in));
        std::printf("%-14s %10.3f %10.1f %9s %10.3fms %10.3fms %8.2f\n", name, deq, bytes / deq / 1e6,
                    same ? "equal" : "DIFFERS", lin4, lin, lin4 / lin);
    }
    std::printf("device %s, compute dtype %s, %lld tokens per matmul, median of %d\n", device_name.c_str(),
                c10::toString(cdt), static_cast<long long>(tokens), repeat);
    return failures == 0 ? 0 : 1;
}
