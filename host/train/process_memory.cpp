#include "train/process_memory.hpp"

#include <c10/core/CachingDeviceAllocator.h>

#include <fstream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <string>

namespace fthost::host {

static int64_t status_kib(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string k = std::string(key) + ":";
    while (std::getline(in, line))
        if (line.compare(0, k.size(), k) == 0) return std::stoll(line.substr(k.size()));  // "  1234 kB"
    return 0;
}

int64_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }
int64_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

void reset_peak_rss() {
    std::ofstream out("/proc/self/clear_refs");
    if (out) out << "5";
}

void release_free_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

void map_large_blocks_on_their_own() {
#if defined(__GLIBC__)
    // A fixed threshold also stops glibc from raising it after each large free (its
    // default), which would send every later large block to the heap.
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
}


int64_t cuda_peak_bytes(int device_index) {
    return c10::getDeviceAllocator(at::kCUDA)->getDeviceStats(static_cast<c10::DeviceIndex>(device_index)).allocated_bytes[0].peak;
}

void reset_cuda_peak(int device_index) {
    c10::getDeviceAllocator(at::kCUDA)->resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
}

}  // namespace fthost::host
