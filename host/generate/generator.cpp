#include "generate/generator.hpp"

#include "generate/decode_graph.hpp"

#include <fthost/torch.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <map>

namespace fthost::host {

at::Generator row_generator(const SamplingOptions& o, int64_t row) {
    uint64_t x = o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(o.first_row + row) + 1;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser: neighbouring rows, unrelated streams
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return at::make_generator<at::CPUGeneratorImpl>(x ^ (x >> 31));
}

at::Tensor pick_next_tokens(const at::Tensor& logits_in, const SamplingOptions& o, std::vector<at::Generator>& gens) {
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
    const at::Tensor probs = logits.softmax(-1);
    if (static_cast<int64_t>(gens.size()) != probs.size(0))
        throw Error("pick_next_tokens: " + std::to_string(gens.size()) + " generators for " +
                    std::to_string(probs.size(0)) + " rows");
    at::Tensor ids = at::empty({probs.size(0)}, at::kLong);
    auto out = ids.accessor<int64_t, 1>();
    for (int64_t b = 0; b < probs.size(0); ++b)
        out[b] = at::multinomial(probs[b], 1, false, gens[static_cast<size_t>(b)]).item<int64_t>();
    return ids;
}

namespace {

struct Row {
    std::vector<int64_t> ids;  // prompt then generated
    size_t prompt_len = 0;
    bool done = false;
    const std::vector<Field>* fields = nullptr;  // the prompt's model inputs besides its tokens
};

// The rows as the data layer's generation batches take them.
std::vector<const std::vector<int64_t>*> ids_of(const std::vector<Row>& rows) {
    std::vector<const std::vector<int64_t>*> out;
    for (const auto& r : rows) out.push_back(r.done ? nullptr : &r.ids);
    return out;
}

HostBatch left_padded(const std::vector<Row>& rows, at::Device device) {
    static const std::vector<Field> kNone;
    std::vector<const std::vector<int64_t>*> ids;
    std::vector<const std::vector<Field>*> fields;
    for (const auto& r : rows) ids.push_back(&r.ids), fields.push_back(r.fields ? r.fields : &kNone);
    return to_device(collate_left_padded(ids, fields), device);
}

HostBatch next_step(const std::vector<Row>& rows, at::Device device) {
    return to_device(collate_last_tokens(ids_of(rows)), device);
}

// The prefill: every row's prompt through the model at once; the next-token logits of
// each row. With a cache, rows that repeat a prompt and its fields — the samples of one
// GRPO group — share one pass when `share` holds: the distinct prompts are prefilled
// (an encoder or an image runs once per prompt) and the cache's rows then repeated.
at::Tensor prefill(ModelSession& model, const std::vector<Row>& rows, ft_kv_cache* cache, bool share,
                   int64_t* prefilled_rows) {
    const auto last_logits = [&](const at::Tensor& h) { return model.logits(h.select(1, h.size(1) - 1)); };
    if (!cache) {
        HostBatch b = left_padded(rows, model.device());
        *prefilled_rows += static_cast<int64_t>(rows.size());
        return last_logits(model.hidden_states(b));
    }
    std::vector<Row> distinct;
    std::vector<int64_t> source;  // row -> its prompt's index in `distinct`
    if (share && model.can_select_kv_cache_rows()) {
        std::map<std::pair<std::vector<int64_t>, const void*>, int64_t> seen;
        for (const auto& r : rows) {
            const auto [it, fresh] = seen.emplace(std::make_pair(r.ids, static_cast<const void*>(r.fields)),
                                                  static_cast<int64_t>(distinct.size()));
            if (fresh) distinct.push_back(r);
            source.push_back(it->second);
        }
    }
    const bool shared = !distinct.empty() && distinct.size() < rows.size();
    HostBatch b = left_padded(shared ? distinct : rows, model.device());
    const at::Tensor logits = last_logits(model.hidden_states_cached(cache, b));
    *prefilled_rows += static_cast<int64_t>(shared ? distinct.size() : rows.size());
    if (!shared) return logits;
    const at::Tensor index = at::tensor(source, at::kLong).to(logits.device());
    model.select_kv_cache_rows(cache, index);
    return logits.index_select(0, index);
}

}  // namespace

std::vector<Generation> generate(ModelSession& model, const std::vector<std::vector<int64_t>>& prompts,
                                 const SamplingOptions& options, int64_t batch_size, const TextCodec& codec,
                                 GenerationStats* stats, const std::vector<const std::vector<Field>*>& fields) {
    if (!fields.empty() && fields.size() != prompts.size())
        throw Error("generate: " + std::to_string(fields.size()) + " field sets for " + std::to_string(prompts.size()) +
                    " prompts");
    SamplingOptions o = options;
    if (!o.stop_ids) o.stop_ids = codec.stop_ids();
    if (o.vocab_limit == 0) o.vocab_limit = codec.sample_limit();
    at::NoGradGuard ng;
    model.set_training(false);
    const auto start = std::chrono::steady_clock::now();
    const bool cached = o.use_cache && model.supports_kv_cache();
    std::vector<Generation> out(prompts.size());
    int64_t generated = 0, replays = 0, prefilled = 0;
    for (size_t first = 0; first < prompts.size(); first += static_cast<size_t>(batch_size)) {
        const size_t last = std::min(prompts.size(), first + static_cast<size_t>(batch_size));
        std::vector<Row> rows;
        std::vector<at::Generator> gens;
        for (size_t i = first; i < last; ++i) {
            gens.push_back(row_generator(o, static_cast<int64_t>(i)));
            if (prompts[i].empty()) throw Error("generation needs a non-empty prompt (row " + std::to_string(i) + ")");
            rows.push_back({prompts[i], prompts[i].size(), false, fields.empty() ? nullptr : fields[i]});
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
            // A prefill with fields (an image's patches, a source) may write cache positions
            // the host cannot count; the fixed-size cache a graph needs is sized from tokens.
            bool with_fields = false;
            for (const auto& r : rows) with_fields = with_fields || (r.fields && !r.fields->empty());
            if (o.cuda_graphs && !with_fields && decode_steps >= DecodeGraph::kMinSteps && DecodeGraph::available(model) &&
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
                logits = prefill(model, rows, cached ? cache.get() : nullptr, o.share_prefill && step == 0, &prefilled);
            }
            const at::Tensor next = pick_next_tokens(logits, o, gens);
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
        stats->prefill_rows += prefilled;
        stats->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return out;
}

}  // namespace fthost::host
