#include "data/span_corruption.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace fthost::host {

SpanCounts span_counts(int64_t length, const SpanCorruptionConfig& cfg) {
    // T5: length = max(length, 2); float32 products and quotients, tf.round (half to even).
    const int64_t n = std::max<int64_t>(length, 2);
    const float noise_f = static_cast<float>(n) * static_cast<float>(cfg.noise_density);
    int64_t noise = static_cast<int64_t>(std::nearbyint(noise_f));
    noise = std::min(std::max<int64_t>(noise, 1), n - 1);
    const float spans_f = static_cast<float>(noise) / static_cast<float>(cfg.mean_noise_span_length);
    int64_t spans = std::max<int64_t>(static_cast<int64_t>(std::nearbyint(spans_f)), 1);
    // T5 has no answer when there are fewer noise or kept tokens than spans (a mean span
    // below 1, a density near 1 on a short text: its segment lengths would not line up);
    // fthost keeps every span non-empty.
    spans = std::min({spans, noise, n - noise});
    return {noise, spans};
}

namespace {

// T5's _random_segmentation: num_items split into num_segments positive lengths, every
// partition equally likely. Fisher-Yates with rng() % (i + 1), as epoch_order shuffles,
// the same on every platform.
std::vector<int64_t> random_segmentation(int64_t num_items, int64_t num_segments, std::mt19937_64& rng) {
    std::vector<uint8_t> first(static_cast<size_t>(num_items - 1), 0);
    for (int64_t i = 0; i < num_segments - 1; ++i) first[static_cast<size_t>(i)] = 1;
    for (int64_t i = static_cast<int64_t>(first.size()) - 1; i > 0; --i) {
        const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
        std::swap(first[static_cast<size_t>(i)], first[static_cast<size_t>(j)]);
    }
    std::vector<int64_t> lengths{1};  // the first item starts segment 0
    for (uint8_t f : first) {
        if (f) lengths.push_back(0);
        ++lengths.back();
    }
    return lengths;
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

}  // namespace

std::vector<bool> random_spans_noise_mask(int64_t length, const SpanCorruptionConfig& cfg, std::mt19937_64& rng) {
    if (length < 1) throw std::invalid_argument("random_spans_noise_mask: length must be at least 1");
    const int64_t n = std::max<int64_t>(length, 2);
    const SpanCounts c = span_counts(length, cfg);
    const auto noise_lengths = random_segmentation(c.noise, c.spans, rng);
    const auto kept_lengths = random_segmentation(n - c.noise, c.spans, rng);
    std::vector<bool> mask;
    mask.reserve(static_cast<size_t>(n));
    for (int64_t s = 0; s < c.spans; ++s) {  // non-noise first, then noise
        mask.insert(mask.end(), static_cast<size_t>(kept_lengths[s]), false);
        mask.insert(mask.end(), static_cast<size_t>(noise_lengths[s]), true);
    }
    mask.resize(static_cast<size_t>(length));
    return mask;
}

uint64_t span_mask_seed(uint64_t seed, uint64_t stream, int64_t row, int64_t epoch) {
    uint64_t h = splitmix64(seed ^ 0x7370616e5f636f72ull);  // "span_cor"
    h = splitmix64(h ^ stream);
    h = splitmix64(h ^ static_cast<uint64_t>(row));
    return splitmix64(h ^ static_cast<uint64_t>(epoch));
}

SpanCorrupted corrupt_spans(const std::vector<int64_t>& tokens, const std::vector<bool>& noise,
                            const std::vector<int64_t>& sentinels, int64_t eos) {
    if (tokens.size() != noise.size()) throw std::invalid_argument("corrupt_spans: tokens and mask differ in length");
    SpanCorrupted out;
    size_t in_source = 0, in_target = 0;  // sentinels used so far by each side
    const auto sentinel = [&](size_t& used) {
        if (used >= sentinels.size())
            throw std::runtime_error("the text needs more than " + std::to_string(sentinels.size()) +
                                     " sentinels (<extra_id_0> .. <extra_id_" + std::to_string(sentinels.size() - 1) +
                                     "), all the tokenizer has: shorten it (max_seq_len) or lower [stage.data] "
                                     "noise_density / raise mean_noise_span_length");
        return sentinels[used++];
    };
    for (size_t i = 0; i < tokens.size(); ++i) {
        const bool starts = i == 0 || noise[i] != noise[i - 1];
        if (noise[i]) {
            if (starts) out.source.push_back(sentinel(in_source));
            out.target.push_back(tokens[i]);
        } else {
            if (starts) out.target.push_back(sentinel(in_target));
            out.source.push_back(tokens[i]);
        }
    }
    out.source.push_back(eos);
    out.target.push_back(eos);
    return out;
}

SpanLengths span_lengths(int64_t length, const SpanCorruptionConfig& cfg) {
    if (length <= 1) return {length + 1, 2};  // the one token kept, then EOS; <extra_id_0> EOS
    const SpanCounts c = span_counts(length, cfg);
    return {length - c.noise + c.spans + 1, c.noise + c.spans + 1};
}

int64_t span_corruption_prefix(int64_t length, int64_t max_seq_len, const SpanCorruptionConfig& cfg) {
    // source + target grows with the length, so the longest prefix that fits is found by
    // stepping down from the whole text (HF's compute_input_and_target_lengths steps up).
    for (int64_t n = length; n >= 1; --n) {
        const SpanLengths l = span_lengths(n, cfg);
        if (l.source + l.target <= max_seq_len) return n;
    }
    return 0;
}

namespace {

const std::string kKey = "[stage.data] span_corruption";

// The decoder row of a span-corrupted text and its source fields, in place in `ex`.
void fill(Example& ex, const SpanRow& row, int64_t epoch) {
    const SpanRow::Setup& s = *row.setup;
    std::mt19937_64 rng(span_mask_seed(s.seed, row.stream, row.row, epoch));
    const auto mask = random_spans_noise_mask(static_cast<int64_t>(row.tokens.size()), s.cfg, rng);
    const SpanCorrupted sc = corrupt_spans(row.tokens, mask, s.sentinels, s.eos);
    ex.ids.assign(1, s.decoder_start);
    ex.ids.insert(ex.ids.end(), sc.target.begin(), sc.target.end());
    ex.labels.assign(1, -100);
    ex.labels.insert(ex.labels.end(), sc.target.begin(), sc.target.end());
    ex.completion_mask.assign(1, 0);
    ex.completion_mask.insert(ex.completion_mask.end(), sc.target.size(), 1);
    ex.prompt_ids = {s.decoder_start};
    ex.prompt_length = 1;
    auto src = source_fields(sc.source);
    std::vector<Field> fields;
    for (auto& f : ex.fields)
        if (f.name != "source_ids" && f.name != "source_mask") fields.push_back(std::move(f));
    fields.insert(fields.begin(), src.begin(), src.end());
    ex.fields = std::move(fields);
}

}  // namespace

SpanCorruption::SpanCorruption(const SpanCorruptionConfig& cfg, const InputReader& reader, uint64_t seed,
                               ft_data_shape shape, const std::string& where)
    : reader_(&reader), where_(where) {
    const std::string at = where.empty() ? kKey : where + ": " + kKey;
    if (shape != FT_DATA_SEQUENCES)
        throw Error(at + " makes single source/target sequences; this objective trains on pairs, feedback or "
                         "sampled completions (use cpt or sft)",
                    FT_ERR_CONFIG);
    if (!reader.codec || reader.decoder_start < 0)
        throw Error(at + " needs an encoder-decoder that reads text (FT_INPUT_SOURCE): the source goes to the "
                         "encoder, the target to the decoder; this stage's model is not one",
                    FT_ERR_CONFIG);
    auto setup = std::make_shared<SpanRow::Setup>();
    setup->cfg = cfg;
    setup->eos = reader.codec->eos_id();
    setup->decoder_start = reader.decoder_start;
    setup->seed = seed;
    for (int i = 0;; ++i) {
        const auto id = reader.codec->token_to_id("<extra_id_" + std::to_string(i) + ">");
        if (!id) break;
        setup->sentinels.push_back(*id);
    }
    if (setup->sentinels.empty())
        throw Error(at + ": the stage's tokenizer (" + reader.codec->describe() +
                        ") has no sentinel tokens <extra_id_0>, <extra_id_1>, ... (T5's extra_ids); use a T5-style "
                        "tokenizer that has them",
                    FT_ERR_CONFIG);
    setup_ = std::move(setup);
}

bool SpanCorruption::applies_to(const nlohmann::json& row) {
    if (!row.is_object() || !row.contains("text")) return false;
    for (const char* k : {"prompt", "completion", "messages", "chosen", "rejected"})
        if (row.contains(k)) return false;
    return true;
}

Example SpanCorruption::example(const nlohmann::json& row, int64_t line, uint64_t stream, ft_label_policy policy,
                                int64_t max_seq_len) const {
    const auto& text = row.at("text");
    if (!text.is_string()) throw std::runtime_error("field 'text' must be a string");
    std::vector<int64_t> tokens = reader_->codec->encode(text.get<std::string>(), false);
    if (tokens.empty()) throw std::runtime_error("field 'text' has no tokens to corrupt (" + kKey + ")");
    const int64_t keep = span_corruption_prefix(static_cast<int64_t>(tokens.size()), max_seq_len, setup_->cfg);
    if (keep < 1)
        throw std::runtime_error("max_seq_len = " + std::to_string(max_seq_len) +
                                 " leaves no room for a span-corrupted source and target (raise [stage.data] max_seq_len)");
    tokens.resize(static_cast<size_t>(keep));
    const int64_t spans = span_counts(keep, setup_->cfg).spans;
    if (spans > static_cast<int64_t>(setup_->sentinels.size()))
        throw std::runtime_error("the text needs " + std::to_string(spans) + " sentinels, the tokenizer has " +
                                 std::to_string(setup_->sentinels.size()) + " (<extra_id_0> .. <extra_id_" +
                                 std::to_string(setup_->sentinels.size() - 1) +
                                 ">): lower max_seq_len or noise_density, or raise mean_noise_span_length (" + kKey + ")");
    auto span = std::make_shared<SpanRow>();
    span->setup = setup_;
    span->tokens = std::move(tokens);
    span->stream = stream;
    span->row = line;

    Example ex;
    ex.row_json = row.dump();
    ex.prompt_text = text.get<std::string>();
    if (reader_->fields) ex.fields = reader_->fields(ex.row_json, policy, max_seq_len).fields;
    fill(ex, *span, 0);
    ex.span = std::move(span);
    return ex;
}

Example remask_spans(const Example& ex, int64_t epoch) {
    if (!ex.span) return ex;
    Example out = ex;
    fill(out, *ex.span, epoch);
    return out;
}

}  // namespace fthost::host
