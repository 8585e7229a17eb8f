// batch_stream.hpp — the one place host batches are built: examples into padded rows,
// or packed rows where several examples share a row and each attends only to itself
// (sequence ids, positions that restart at 0), the model's fields stacked beside them,
// and the left-padded batches generation decodes from. Training order is a
// deterministic shuffle from (seed, epoch), and the stream's position can be saved and
// restored so a resumed run sees the same batches. Span-corrupted examples
// ([stage.data] span_corruption) are masked anew for each epoch from (seed, row, epoch),
// so a resumed run sees the same masks too.
#pragma once

#include "data/example.hpp"

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace fthost::host {

struct HostBatch {
    at::Tensor input_ids, labels, position_ids, sequence_ids;  // int64 [B, T]
    at::Tensor completion_mask;                                // int64 [B, T]
    at::Tensor desirable;                                      // int64 [examples], FT_DATA_FEEDBACK only
    int64_t num_labels = 0;    // labels != -100
    int64_t num_tokens = 0;    // non-padding tokens
    int64_t num_examples = 0;  // examples (pairs count once)
    std::vector<const Example*> examples;  // every row's example(s), in row order
    // Span-corrupted examples masked for this batch's epoch (past the first), which
    // `examples` points to: the batch keeps them alive.
    std::vector<std::shared_ptr<const Example>> remasked;
    // Further named inputs: the examples' model fields (stacked), rollout data (FT_DATA_COMPLETIONS).
    std::vector<std::pair<std::string, at::Tensor>> extras;
    std::vector<ft_named_tensor> named_extras;  // filled by as_ft_batch (points into this batch)
};

// ft_batch view of a HostBatch (pointers into it: keep the HostBatch alive). The
// effective-batch totals default to the batch's own.
ft_batch as_ft_batch(HostBatch& b, int64_t num_items_in_batch, int64_t num_examples_in_batch = 0);

// The batch's tensors (extras too) on `device`.
HostBatch to_device(HostBatch b, at::Device device);

// Each row's model fields (the same names in the same order in every row) stacked
// along a new dim 0, every dim padded to the longest with the field's pad value. No
// fields: nothing. Throws naming a field that differs between rows.
std::vector<std::pair<std::string, at::Tensor>> stack_fields(const std::vector<const std::vector<Field>*>& rows);

// Rows of examples -> one batch, padded to the longest row; examples with model fields
// must be alone in their row (they are never packed).
HostBatch collate(const std::vector<std::vector<const Example*>>& rows);

// Examples -> one batch in an objective's data shape (fthost.h): one row each, then
// each example's partner row (the rejected sequence, or the mismatched KL row).
HostBatch collate_shaped(const std::vector<const Example*>& examples, ft_data_shape shape);

// Generation: prompts (with what was generated so far) left-padded into one batch —
// sequence id -1 on padding, positions from 0 per row — with each row's model fields.
HostBatch collate_left_padded(const std::vector<const std::vector<int64_t>*>& rows,
                              const std::vector<const std::vector<Field>*>& fields);
// A cached decode step: each row's last token at its position; a null row (finished)
// feeds padding that no token attends to.
HostBatch collate_last_tokens(const std::vector<const std::vector<int64_t>*>& rows);

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
                uint64_t seed, ft_data_shape shape = FT_DATA_SEQUENCES);
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
    ft_data_shape shape_;
    Position pos_;
    std::vector<int64_t> order_;
    int64_t batches_per_epoch_ = 0;
};

}  // namespace fthost::host
