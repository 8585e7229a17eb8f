#include "data/batch_stream.hpp"

#include "data/span_corruption.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <random>

namespace fthost::host {

ft_batch as_ft_batch(HostBatch& b, int64_t num_items_in_batch, int64_t num_examples_in_batch) {
    ft_batch fb{};
    fb.struct_size = sizeof(ft_batch);
    fb.input_ids = reinterpret_cast<ft_tensor>(&b.input_ids);
    fb.labels = reinterpret_cast<ft_tensor>(&b.labels);
    fb.position_ids = reinterpret_cast<ft_tensor>(&b.position_ids);
    fb.sequence_ids = reinterpret_cast<ft_tensor>(&b.sequence_ids);
    fb.num_items_in_batch = num_items_in_batch;
    fb.num_examples_in_batch = num_examples_in_batch > 0 ? num_examples_in_batch : b.num_examples;
    b.named_extras.clear();
    if (b.completion_mask.defined())
        b.named_extras.push_back({"completion_mask", reinterpret_cast<ft_tensor>(&b.completion_mask)});
    if (b.desirable.defined()) b.named_extras.push_back({"desirable", reinterpret_cast<ft_tensor>(&b.desirable)});
    for (auto& [name, t] : b.extras) b.named_extras.push_back({name.c_str(), reinterpret_cast<ft_tensor>(&t)});
    fb.extras = b.named_extras.data();
    fb.extra_count = static_cast<uint32_t>(b.named_extras.size());
    return fb;
}

HostBatch to_device(HostBatch b, at::Device d) {
    if (d == at::kCPU) return b;
    for (at::Tensor* t : {&b.input_ids, &b.labels, &b.position_ids, &b.sequence_ids, &b.completion_mask, &b.desirable})
        if (t->defined()) *t = t->to(d);
    for (auto& [_, t] : b.extras) t = t.to(d);
    return b;
}

std::vector<std::pair<std::string, at::Tensor>> stack_fields(const std::vector<const std::vector<Field>*>& rows) {
    std::vector<std::pair<std::string, at::Tensor>> out;
    if (rows.empty() || rows[0]->empty()) {
        for (const auto* r : rows)
            if (!r->empty()) throw Error("a batch mixes rows with and without the model's fields");
        return out;
    }
    const std::vector<Field>& first = *rows[0];
    for (size_t k = 0; k < first.size(); ++k) {
        const Field& f = first[k];
        std::vector<int64_t> shape(f.value.sizes().begin(), f.value.sizes().end());
        for (const auto* r : rows) {
            if (r->size() != first.size() || (*r)[k].name != f.name || (*r)[k].value.dim() != f.value.dim() ||
                (*r)[k].value.scalar_type() != f.value.scalar_type())
                throw Error("the model's field '" + f.name + "' differs between rows of one batch (every row needs "
                            "the same fields, with the same number of dims and dtype)");
            for (int64_t d = 0; d < f.value.dim(); ++d) shape[d] = std::max(shape[d], (*r)[k].value.size(d));
        }
        shape.insert(shape.begin(), static_cast<int64_t>(rows.size()));
        at::Tensor stacked = at::full(shape, f.pad, f.value.options());
        for (size_t r = 0; r < rows.size(); ++r) {
            at::Tensor dst = stacked.select(0, static_cast<int64_t>(r));
            const at::Tensor& src = (*rows[r])[k].value;
            for (int64_t d = 0; d < src.dim(); ++d) dst = dst.narrow(d, 0, src.size(d));
            dst.copy_(src);
        }
        out.emplace_back(f.name, stacked);
    }
    return out;
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
    std::vector<const std::vector<Field>*> fields;
    for (const auto& row : rows) {
        if (row.size() > 1 && !row.front()->fields.empty()) throw Error("examples with model fields cannot be packed");
        fields.push_back(&row.front()->fields);
    }
    b.extras = stack_fields(fields);
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

HostBatch collate_left_padded(const std::vector<const std::vector<int64_t>*>& rows,
                              const std::vector<const std::vector<Field>*>& fields) {
    const int64_t B = static_cast<int64_t>(rows.size());
    size_t T = 1;
    for (const auto* r : rows) T = std::max(T, r->size());
    HostBatch b;
    b.input_ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);  // padding: sequence id -1
    b.position_ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
    b.sequence_ids = at::full({B, static_cast<int64_t>(T)}, -1, at::kLong);
    auto ids = b.input_ids.accessor<int64_t, 2>();
    auto pos = b.position_ids.accessor<int64_t, 2>();
    auto seq = b.sequence_ids.accessor<int64_t, 2>();
    for (int64_t r = 0; r < B; ++r) {
        const std::vector<int64_t>& row = *rows[r];
        const size_t off = T - row.size();
        for (size_t i = 0; i < row.size(); ++i) {
            ids[r][off + i] = row[i];
            pos[r][off + i] = static_cast<int64_t>(i);
            seq[r][off + i] = 0;
        }
    }
    b.labels = at::full_like(b.input_ids, -100);
    b.extras = stack_fields(fields);
    return b;
}

HostBatch collate_last_tokens(const std::vector<const std::vector<int64_t>*>& rows) {
    const int64_t B = static_cast<int64_t>(rows.size());
    HostBatch b;
    b.input_ids = at::zeros({B, 1}, at::kLong);
    b.position_ids = at::zeros({B, 1}, at::kLong);
    b.sequence_ids = at::full({B, 1}, -1, at::kLong);
    // Accessors, not tensor indexing: `t[r][0] = x` is three dispatched ops per element.
    auto ids = b.input_ids.accessor<int64_t, 2>();
    auto pos = b.position_ids.accessor<int64_t, 2>();
    auto seq = b.sequence_ids.accessor<int64_t, 2>();
    for (int64_t r = 0; r < B; ++r) {
        if (!rows[r]) continue;
        ids[r][0] = rows[r]->back();
        pos[r][0] = static_cast<int64_t>(rows[r]->size() - 1);
        seq[r][0] = 0;
    }
    b.labels = at::full_like(b.input_ids, -100);
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
    const int64_t epoch = pos_.epoch;  // take_rows stops at the end of an epoch
    auto rows = take_rows();
    // Epoch 0's masks are the loaded examples'; later epochs mask span-corrupted rows anew.
    std::vector<std::shared_ptr<const Example>> remasked;
    if (epoch > 0)
        for (auto& row : rows)
            for (const Example*& ex : row)
                if (ex->span) {
                    remasked.push_back(std::make_shared<const Example>(remask_spans(*ex, epoch)));
                    ex = remasked.back().get();
                }
    HostBatch b;
    if (shape_ == FT_DATA_SEQUENCES || shape_ == FT_DATA_COMPLETIONS) {
        b = collate(rows);
    } else {
        std::vector<const Example*> examples;
        for (const auto& row : rows) examples.push_back(row.front());
        b = collate_shaped(examples, shape_);
    }
    b.remasked = std::move(remasked);
    return b;
}

}  // namespace fthost::host
