// process_memory.hpp — the process's resident memory as Linux reports it (/proc/self):
// the peak so far (VmHWM) and a reset of that peak, so a stage can report the peak of
// its training loop apart from loading and quantising the model. Where /proc is not
// available the functions return 0 / do nothing.
#pragma once

#include <cstdint>

namespace fthost::host {

// Peak resident set size since the process started or since reset_peak_rss(), in bytes.
int64_t peak_rss_bytes();
// Current resident set size, in bytes.
int64_t current_rss_bytes();
// Resets the peak to the current RSS (Linux >= 4.0: "5" > /proc/self/clear_refs).
void reset_peak_rss();
// Hands memory the allocator holds but no tensor uses back to the system (glibc's
// malloc_trim). After a parameterisation freed base weights (qlora) the freed blocks
// otherwise stay in the heap: glibc raises its mmap threshold after large frees, so
// weight-sized blocks come from the heap and are not unmapped when freed.
void release_free_memory();
// Blocks of 4 MiB and more get a mapping of their own, given back to the system when
// freed. Otherwise glibc serves them from its heap, where freed holes get split by the
// smaller blocks allocated between them: quantising a checkpoint weight by weight (a
// float32 transient, then a small NF4 result, per weight) would grow the heap by about
// the whole base although no more than one transient lives at a time, and training with
// it would keep every dequantised weight's block (bench/real_size_memory.sh, qlora's
// training peak at 0.4B: 1,415 MB with heap reuse of blocks up to 32 MiB, 1,069 MB
// without; docs/ARCHITECTURE.md). A stage's setup calls it.
void map_large_blocks_on_their_own();

// The CUDA caching allocator's peak of bytes held by tensors on `device_index` since the
// last reset_cuda_peak (what torch.cuda.max_memory_allocated reports).
int64_t cuda_peak_bytes(int device_index);
void reset_cuda_peak(int device_index);

}  // namespace fthost::host
