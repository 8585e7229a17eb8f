#include "data/batch_stream.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <random>

namespace fthost::host {

HostBatch to_device(HostBatch b, at::Device d) {
    if (d == at::kCPU) return b;
    for (at::Tensor* t : {&b.input_ids, &b.labels, &b.position_ids, &b.sequence_ids, &b.completion_mask, &b.desirable})
        if (t->defined()) *t = t->to(d);
    for (auto& [_, t] : b.extras) t = t.to(d);
    return b;
}

HostBatch collate(const std::vector<std::vector<const Example*>>& rows) {
    const int64_t B = static_cast<int64_t>(rows.size());
    int64_t T = 1;
    for (const auto& row : rows) {
        int64_t len = 0;
        for (const Example* ex : row) len += static_cast<int64_t>(ex->ids.size());
        T = std::max(T, len);
    }
    HostBatch b;
    // Padding is what sequence_ids = -1 marks (never attended to, never a label); its id
    // only has to be inside every vocabulary.
    b.input_ids = at::zeros({B, T}, at::kLong);
    b.labels = at::full({B, T}, -100, at::kLong);
    b.position_ids = at::zeros({B, T}, at::kLong);
    b.sequence_ids = at::full({B, T}, -1, at::kLong);
    auto ids = b.input_ids.accessor<int64_t, 2>();
    auto labels = b.labels.accessor<int64_t, 2>();
    auto pos = b.position_ids.accessor<int64_t, 2>();
    b.completion_mask = at::zeros({B, T}, at::kLong);
    auto seq = b.sequence_ids.accessor<int64_t, 2>();
    auto comp = b.completion_mask.accessor<int64_t, 2>();
    for (int64_t r = 0; r < B; ++r) {
        int64_t t = 0;
        for (size_t d = 0; d < rows[r].size(); ++d) {
            const Example& ex = *rows[r][d];
            for (size_t i = 0; i < ex.ids.size(); ++i, ++t) {
                ids[r][t] = ex.ids[i];
                labels[r][t] = ex.labels[i];
                pos[r][t] = static_cast<int64_t>(i);
                seq[r][t] = static_cast<int64_t>(d);
                comp[r][t] = i < ex.completion_mask.size() ? ex.completion_mask[i] : 0;
                b.num_labels += ex.labels[i] != -100;
                ++b.num_tokens;
            }
            b.examples.push_back(&ex);
        }
    }
    b.num_examples = static_cast<int64_t>(b.examples.size());
    return b;
}

HostBatch collate_shaped(const std::vector<const Example*>& examples, ft_data_shape shape) {
    std::vector<std::vector<const Example*>> rows;
    for (const Example* ex : examples) rows.push_back({ex});
    if (shape == FT_DATA_SEQUENCES) return collate(rows);
    const size_t n = examples.size();
    for (const Example* ex : examples) {
        if (ex->partner.size() != 1)
            throw Error(std::string("a ") + (shape == FT_DATA_PAIRS ? "pair" : "feedback") +
                        " batch got an example without its second row (was the data loaded for this objective?)");
        rows.push_back({&ex->partner[0]});
    }
    HostBatch b = collate(rows);
    b.num_examples = static_cast<int64_t>(n);
    if (shape == FT_DATA_FEEDBACK) {
        b.desirable = at::empty({static_cast<int64_t>(n)}, at::kLong);
        for (size_t i = 0; i < n; ++i) b.desirable[i] = int64_t{examples[i]->desirable};
    }
    return b;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    if (!shuffle) return order;
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
    for (int64_t i = n - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
        std::swap(order[i], order[j]);
    }
    return order;
}

BatchStream::BatchStream(const std::vector<Example>& data, int64_t batch_size, int64_t max_seq_len, bool packing,
                         bool shuffle, uint64_t seed, ft_data_shape shape)
    : data_(data),
      batch_size_(batch_size),
      max_seq_len_(max_seq_len),
      packing_(packing && shape == FT_DATA_SEQUENCES),
      shuffle_(shuffle),
      seed_(seed),
      shape_(shape) {
    if (data_.empty()) throw Error("no training examples", FT_ERR_CONFIG);
    seek({0, 0});
    while (pos_.epoch == 0) {
        take_rows();
        ++batches_per_epoch_;
    }
    seek({0, 0});
}

void BatchStream::seek(Position p) {
    pos_ = p;
    order_ = epoch_order(static_cast<int64_t>(data_.size()), seed_, pos_.epoch, shuffle_);
}

std::vector<std::vector<const Example*>> BatchStream::take_rows() {
    std::vector<std::vector<const Example*>> rows;
    const int64_t n = static_cast<int64_t>(order_.size());
    int64_t row_len = 0;
    while (pos_.cursor < n) {
        const Example* ex = &data_[order_[pos_.cursor]];
        const int64_t len = static_cast<int64_t>(ex->ids.size());
        if (packing_ && !rows.empty() && row_len + len <= max_seq_len_) {
            rows.back().push_back(ex);
            row_len += len;
        } else {
            if (static_cast<int64_t>(rows.size()) == batch_size_) break;
            rows.push_back({ex});
            row_len = len;
        }
        ++pos_.cursor;
    }
    if (pos_.cursor >= n) seek({pos_.epoch + 1, 0});  // a short last batch ends the epoch
    return rows;
}

HostBatch BatchStream::next() {
    if (shape_ == FT_DATA_SEQUENCES || shape_ == FT_DATA_COMPLETIONS) return collate(take_rows());
    std::vector<const Example*> examples;
    for (const auto& row : take_rows()) examples.push_back(row.front());
    return collate_shaped(examples, shape_);
}

}  // namespace fthost::host
