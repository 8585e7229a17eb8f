// batch_stream.hpp — examples into batches: padded rows, or packed rows where several
// examples share a row and each attends only to itself (sequence ids, positions that
// restart at 0). Order is a deterministic shuffle from (seed, epoch), and the stream's
// position can be saved and restored so a resumed run sees the same batches.
#pragma once

#include "data/example.hpp"

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace fthost::host {

struct HostBatch {
    at::Tensor input_ids, labels, position_ids, sequence_ids;  // int64 [B, T]
    int64_t num_labels = 0;  // labels != -100
    int64_t num_tokens = 0;  // non-padding tokens
};

// Rows of examples -> one batch, padded to the longest row.
HostBatch collate(const std::vector<std::vector<const Example*>>& rows);

// The permutation of [0, n) for an epoch: Fisher-Yates on a seeded mt19937_64, the
// same on every platform.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle);

class BatchStream {
public:
    struct Position {
        int64_t epoch = 0;
        int64_t cursor = 0;  // index into the epoch's order
    };

    BatchStream(const std::vector<Example>& data, int64_t batch_size, int64_t max_seq_len, bool packing, bool shuffle,
                uint64_t seed);
    HostBatch next();
    Position position() const { return pos_; }
    void seek(Position p);
    // Batches in one epoch (for packing, counted on epoch 0's order).
    int64_t batches_per_epoch() const { return batches_per_epoch_; }

private:
    std::vector<std::vector<const Example*>> take_rows();
    const std::vector<Example>& data_;
    int64_t batch_size_, max_seq_len_;
    bool packing_, shuffle_;
    uint64_t seed_;
    Position pos_;
    std::vector<int64_t> order_;
    int64_t batches_per_epoch_ = 0;
};

}  // namespace fthost::host
