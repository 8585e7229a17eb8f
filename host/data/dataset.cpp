#include "data/dataset.hpp"

#include "data/batch_stream.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <optional>

namespace fthost::host {

std::vector<Example> load_examples(const std::string& file, bool skip_malformed, const InputReader& reader,
                                   ft_label_policy policy, int64_t max_seq_len, JsonlStats* stats, ft_data_shape shape,
                                   const SpanCorruption* span, uint64_t stream) {
    std::vector<Example> out;
    JsonlStats s = read_jsonl(file, skip_malformed, [&](const nlohmann::json& row, int64_t line) {
        if (span && SpanCorruption::applies_to(row)) out.push_back(span->example(row, line, stream, policy, max_seq_len));
        else out.push_back(make_example(row, reader, policy, max_seq_len, shape));
    });
    if (stats) *stats = s;
    return out;
}

std::vector<Example> load_examples(const std::string& file, bool skip_malformed, const TextCodec& codec,
                                   ft_label_policy policy, int64_t max_seq_len, JsonlStats* stats, ft_data_shape shape) {
    return load_examples(file, skip_malformed, InputReader{&codec, {}}, policy, max_seq_len, stats, shape);
}

void add_mismatched_rows(std::vector<Example>& examples, int64_t chunk, int64_t max_seq_len) {
    const int64_t n = static_cast<int64_t>(examples.size());
    for (int64_t start = 0; start < n; start += chunk) {
        const int64_t len = std::min(chunk, n - start);
        for (int64_t i = 0; i < len; ++i) {
            const Example& other = examples[start + (i + len - 1) % len];
            Example kl = mismatched_example(examples[start + i], other, max_seq_len);
            examples[start + i].partner.assign(1, std::move(kl));
        }
    }
}

Datasets load_datasets(const DataConfig& cfg, const TextCodec& codec, ft_label_policy policy, uint64_t seed,
                       ft_data_shape shape, int64_t batch_size) {
    return load_datasets(cfg, InputReader{&codec, {}}, policy, seed, shape, batch_size);
}

Datasets load_datasets(const DataConfig& cfg, const InputReader& codec, ft_label_policy policy, uint64_t seed,
                       ft_data_shape shape, int64_t batch_size) {
    Datasets d;
    std::optional<SpanCorruption> span;
    if (cfg.span_corruption)
        span.emplace(SpanCorruptionConfig{cfg.noise_density, cfg.mean_noise_span_length}, codec, seed, shape,
                     cfg.span_corruption_where);
    const SpanCorruption* sp = span ? &*span : nullptr;
    auto all = load_examples(cfg.train_file, cfg.skip_malformed, codec, policy, cfg.max_seq_len, &d.train_stats, shape, sp, 0);
    if (shape == FT_DATA_FEEDBACK) add_mismatched_rows(all, std::max<int64_t>(batch_size, 1), cfg.max_seq_len);
    if (!cfg.eval_file.empty()) {
        d.train = std::move(all);
        d.eval = load_examples(cfg.eval_file, cfg.skip_malformed, codec, policy, cfg.max_seq_len, &d.eval_stats, shape,
                               sp, 1);
        if (shape == FT_DATA_FEEDBACK) add_mismatched_rows(d.eval, std::max<int64_t>(batch_size, 1), cfg.max_seq_len);
    } else if (cfg.eval_fraction > 0) {
        const auto order = epoch_order(static_cast<int64_t>(all.size()), seed ^ 0xE7A1u, 0, true);
        const auto n_eval = static_cast<size_t>(cfg.eval_fraction * static_cast<double>(all.size()));
        std::vector<bool> is_eval(all.size(), false);
        for (size_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
        for (size_t i = 0; i < all.size(); ++i) (is_eval[i] ? d.eval : d.train).push_back(std::move(all[i]));
    } else {
        d.train = std::move(all);
    }
    if (d.train.empty()) throw Error(cfg.train_file + ": no training examples", FT_ERR_CONFIG);
    return d;
}

}  // namespace fthost::host
