#include "generate/generator.hpp"

#include "generate/decode_graph.hpp"

#include <fthost/torch.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>

namespace fthost::host {

at::Tensor pick_next_tokens(const at::Tensor& logits_in, const SamplingOptions& o, at::Generator& gen) {
    at::Tensor logits = logits_in;
    if (o.vocab_limit > 0 && o.vocab_limit < logits.size(-1)) logits = logits.narrow(-1, 0, o.vocab_limit);
    // Greedy on the logits' device: B ids cross to the host, not [B, V] logits (argmax
    // takes the first maximum on every device, so the ids are the same).
    if (o.temperature <= 0) return logits.argmax(-1).to(at::kCPU);
    logits = logits.to(at::kCPU, at::kFloat);
    logits = logits / o.temperature;
    const double neg_inf = -std::numeric_limits<double>::infinity();
    if (o.top_k > 0 && o.top_k < logits.size(-1)) {
        const at::Tensor kth = std::get<0>(logits.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
        logits = logits.masked_fill(logits < kth, neg_inf);
    }
    if (o.top_p < 1.0) {
        // Hugging Face's TopPLogitsWarper: drop the least likely tokens whose total
        // probability is at most 1 - top_p, always keeping the most likely one.
        auto [sorted, idx] = logits.sort(-1, /*descending=*/false);
        at::Tensor cum = sorted.softmax(-1).cumsum(-1);
        at::Tensor drop = cum <= (1.0 - o.top_p);
        drop.narrow(-1, drop.size(-1) - 1, 1).fill_(false);
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), neg_inf);
    }
    return at::multinomial(logits.softmax(-1), 1, false, gen).squeeze(-1);
}

namespace {

struct Row {
    std::vector<int64_t> ids;  // prompt then generated
    size_t prompt_len = 0;
    bool done = false;
};

// Left-padded rows -> a batch (sequence id -1 on padding, positions from 0 per row).
HostBatch left_padded(const std::vector<Row>& rows, at::Device device) {
    const int64_t B = static_cast<int64_t>(rows.size());
    size_t T = 1;
    for (const auto& r : rows) T = std::max(T, r.ids.size());
    HostBatch b;
    b.input_ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);  // padding: sequence id -1
    b.position_ids = at::zeros({B, static_cast<int64_t>(T)}, at::kLong);
    b.sequence_ids = at::full({B, static_cast<int64_t>(T)}, -1, at::kLong);
    auto ids = b.input_ids.accessor<int64_t, 2>();
    auto pos = b.position_ids.accessor<int64_t, 2>();
    auto seq = b.sequence_ids.accessor<int64_t, 2>();
    for (int64_t r = 0; r < B; ++r) {
        const size_t off = T - rows[r].ids.size();
        for (size_t i = 0; i < rows[r].ids.size(); ++i) {
            ids[r][off + i] = rows[r].ids[i];
            pos[r][off + i] = static_cast<int64_t>(i);
            seq[r][off + i] = 0;
        }
    }
    b.labels = at::full_like(b.input_ids, -100);
    return to_device(std::move(b), device);
}

// One new token per row for the cached path; finished rows feed padding.
HostBatch next_step(const std::vector<Row>& rows, at::Device device) {
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
        if (rows[r].done) continue;
        ids[r][0] = rows[r].ids.back();
        pos[r][0] = static_cast<int64_t>(rows[r].ids.size() - 1);
        seq[r][0] = 0;
    }
    b.labels = at::full_like(b.input_ids, -100);
    return to_device(std::move(b), device);
}

}  // namespace

std::vector<Generation> generate(ModelSession& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const SamplingOptions& options, int64_t batch_size, const TextCodec& codec,
                                 GenerationStats* stats) {
    SamplingOptions o = options;
    if (!o.stop_ids) o.stop_ids = codec.stop_ids();
    if (o.vocab_limit == 0) o.vocab_limit = codec.sample_limit();
    at::NoGradGuard ng;
    model.set_training(false);
    const auto start = std::chrono::steady_clock::now();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    const bool cached = o.use_cache && model.supports_kv_cache();
    std::vector<Generation> out(prompts.size());
    int64_t generated = 0, replays = 0;
    for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(batch_size)) {
        const size_t last = std::min(prompts.size(), first + static_cast<size_t>(batch_size));
        std::vector<Row> rows;
        for (size_t i = first; i < last; ++i) {
            if (prompts[i].empty()) throw Error("generation needs a non-empty prompt (row " + std::to_string(i) + ")");
            rows.push_back({prompts[i], prompts[i].size(), false});
        }
        // With CUDA graphs the cache is sized once for the whole generation (the longest
        // prompt and every new token; the last is never fed back), so that replayed steps
        // write to fixed memory. Otherwise it grows as needed and attends over the written
        // tokens only.
        std::shared_ptr<ft_kv_cache> cache;
        std::unique_ptr<DecodeGraph> graph;
        if (cached) {
            cache = model.new_kv_cache();
            size_t longest = 0;
            for (const auto& r : rows) longest = std::max(longest, r.ids.size());
            const int64_t decode_steps = o.max_new_tokens - 1;
            if (o.cuda_graphs && decode_steps >= DecodeGraph::kMinSteps && DecodeGraph::available(model) &&
                model.reserve_kv_cache(cache.get(), static_cast<int64_t>(longest) + o.max_new_tokens))
                graph = std::make_unique<DecodeGraph>(model, cache.get(), static_cast<int64_t>(rows.size()),
                                                      decode_steps);
        }
        for (int64_t step = 0; step < o.max_new_tokens; ++step) {
            // Next-token logits of each row's last token.
            at::Tensor logits;
            if (graph && step > 0) {
                logits = graph->logits(next_step(rows, at::kCPU));
            } else if (cached && step > 0) {
                HostBatch b = next_step(rows, model.device());
                logits = model.logits(model.hidden_states_cached(cache.get(), b).select(1, 0));
            } else {
                HostBatch b = left_padded(rows, model.device());
                at::Tensor h = cached ? model.hidden_states_cached(cache.get(), b) : model.hidden_states(b);
                logits = model.logits(h.select(1, h.size(1) - 1));
            }
            const at::Tensor next = pick_next_tokens(logits, o, gen);
            auto nx = next.accessor<int64_t, 1>();
            bool all_done = true;
            for (size_t r = 0; r < rows.size(); ++r) {
                Row& row = rows[r];
                if (row.done) continue;
                Generation& g = out[first + r];
                const int64_t id = nx[static_cast<int64_t>(r)];
                row.ids.push_back(id);
                g.tokens.push_back(id);
                ++generated;
                if (std::find(o.stop_ids->begin(), o.stop_ids->end(), id) != o.stop_ids->end()) {
                    row.done = true;
                    g.finish_reason = "stop";
                    continue;
                }
                if (!o.stop_strings.empty()) {
                    const std::string text = codec.decode(g.tokens);
                    for (const auto& s : o.stop_strings)
                        if (!s.empty() && text.find(s) != std::string::npos) row.done = true;
                    if (row.done) {
                        g.finish_reason = "stop";
                        continue;
                    }
                }
                all_done = false;
            }
            // Without a cache the batch is rebuilt from the rows, so finished rows stop
            // growing; with one they feed padding that no token attends to.
            if (all_done) break;
        }
        if (graph) replays += graph->replays();
        for (size_t r = 0; r < rows.size(); ++r) {
            Generation& g = out[first + r];
            if (g.finish_reason.empty()) g.finish_reason = "length";
            g.text = codec.decode(g.tokens);
            for (const auto& s : o.stop_strings) {
                const auto at = s.empty() ? std::string::npos : g.text.find(s);
                if (at != std::string::npos) g.text.resize(at);
            }
        }
    }
    if (stats) {
        stats->tokens += generated;
        stats->graph_replays += replays;
        stats->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return out;
}

}  // namespace fthost::host
