// [stage.data] span_corruption: T5's span-corruption objective for encoder-decoders. The
// mask's counts are T5's (t5/data/preprocessors.py random_spans_noise_mask, float32 and
// round-half-to-even), source and target are laid out as noise_span_to_unique_sentinel /
// nonnoise_span_to_unique_sentinel make them, and together they give back the text's
// tokens exactly; masks depend on (seed, row, epoch) only, so every epoch differs and a
// resumed stream sees the same ones; the key is refused where it cannot work.
#include "data/dataset.hpp"
#include "data/span_corruption.hpp"
#include "io/atomic_file.hpp"
#include "run/run_driver.hpp"
#include "test_support.hpp"
#include "tokenizer/text_codec.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <iostream>
#include <map>
#include <set>

namespace fthost::test {
namespace {

using json = nlohmann::json;

constexpr int64_t kEos = 1;

// Sentinels far from the test's token ids (< 1000), in T5's order: <extra_id_0> highest.
std::vector<int64_t> test_sentinels(int n) {
    std::vector<int64_t> s;
    for (int i = 0; i < n; ++i) s.push_back(2000 - i);
    return s;
}

struct Runs {
    std::vector<int64_t> noise, kept;  // the lengths of the noise and non-noise runs, in order
};
Runs runs_of(const std::vector<bool>& mask) {
    Runs r;
    for (size_t i = 0; i < mask.size(); ++i) {
        auto& v = mask[i] ? r.noise : r.kept;
        if (i == 0 || mask[i] != mask[i - 1]) v.push_back(0);
        ++v.back();
    }
    return r;
}

// The tokens a source and target stand for: each sentinel of the source replaced by the
// target's tokens after the same sentinel. Checks on the way that both sides use
// <extra_id_0>, <extra_id_1>, ... in order, once each, that every span is non-empty and
// that both end with EOS.
std::vector<int64_t> reassemble(const SpanCorrupted& sc, const std::vector<int64_t>& sentinels, int64_t eos = kEos) {
    std::map<int64_t, size_t> index;
    for (size_t i = 0; i < sentinels.size(); ++i) index[sentinels[i]] = i;
    EXPECT_FALSE(sc.source.empty());
    EXPECT_FALSE(sc.target.empty());
    EXPECT_EQ(sc.source.back(), eos);
    EXPECT_EQ(sc.target.back(), eos);
    std::vector<std::vector<int64_t>> spans;
    for (size_t i = 0; i + 1 < sc.target.size(); ++i) {
        const int64_t t = sc.target[i];
        if (index.count(t)) {
            EXPECT_EQ(index[t], spans.size()) << "target sentinels out of order at " << i;
            spans.emplace_back();
        } else {
            EXPECT_FALSE(spans.empty()) << "the target must start with <extra_id_0>";
            if (!spans.empty()) spans.back().push_back(t);
        }
    }
    std::vector<int64_t> out;
    size_t next = 0;
    for (size_t i = 0; i + 1 < sc.source.size(); ++i) {
        const int64_t t = sc.source[i];
        if (!index.count(t)) {
            out.push_back(t);
            continue;
        }
        EXPECT_EQ(index[t], next) << "source sentinels out of order at " << i;
        EXPECT_TRUE(i > 0 && !index.count(sc.source[i - 1])) << "an empty non-noise span before sentinel " << next;
        if (next < spans.size()) {
            EXPECT_FALSE(spans[next].empty()) << "empty noise span " << next;
            out.insert(out.end(), spans[next].begin(), spans[next].end());
        }
        ++next;
    }
    EXPECT_EQ(next, spans.size()) << "source and target differ in their number of sentinels";
    return out;
}

std::vector<int64_t> iota_tokens(int64_t n, int64_t first = 10) {
    std::vector<int64_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = first + i;
    return t;
}

// A byte-level BPE tokenizer (the GPT-2 fixture, EOS <|endoftext|> = 0) with `extra`
// T5 sentinels added as special tokens, <extra_id_0> the highest id as in T5's vocabulary.
fs::path sentinel_tokenizer(const std::string& name, int extra) {
    const fs::path dir = temp_dir("span_tok_" + name);
    std::ifstream in(fs::path(source_dir()) / "tests/fixtures/tokenizers/gpt2/tokenizer.json");
    json tok = json::parse(in);
    const int64_t base = static_cast<int64_t>(tok["model"]["vocab"].size());
    for (int i = 0; i < extra; ++i)
        tok["added_tokens"].push_back({{"id", base + extra - 1 - i}, {"content", "<extra_id_" + std::to_string(i) + ">"},
                                       {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                                       {"normalized", false}, {"special", true}});
    write_file(dir / "tokenizer.json", tok.dump());
    write_file(dir / "tokenizer_config.json", json{{"eos_token", "<|endoftext|>"}}.dump());
    return dir;
}

// Deterministic sentences of `words` words from a small vocabulary.
std::string sentence(int words, uint64_t seed) {
    static const char* kWords[] = {"the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
                                   "seven", "green", "birds", "sing", "near", "old", "river", "stones", "today", "again"};
    std::mt19937_64 rng(seed);
    std::string s;
    for (int i = 0; i < words; ++i) s += std::string(i ? " " : "") + kWords[rng() % 20];
    return s + ".";
}

struct Corpus {
    fs::path dir;
    std::vector<std::string> texts;
};
Corpus write_corpus(const std::string& name, int rows, int words) {
    Corpus c{temp_dir("span_" + name), {}};
    std::ofstream out(c.dir / "train.jsonl");
    for (int i = 0; i < rows; ++i) {
        c.texts.push_back(sentence(words, 100 + static_cast<uint64_t>(i)));
        out << json{{"text", c.texts.back()}}.dump() << "\n";
    }
    return c;
}

DataConfig span_config(const fs::path& train, int64_t max_seq_len = 512) {
    DataConfig cfg;
    cfg.train_file = train.string();
    cfg.max_seq_len = max_seq_len;
    cfg.span_corruption = true;
    cfg.span_corruption_where = "c.toml:13:1";
    return cfg;
}

const at::Tensor& field(const Example& ex, const std::string& name) {
    for (const auto& f : ex.fields)
        if (f.name == name) return f.value;
    throw std::runtime_error("no field " + name);
}
std::vector<int64_t> to_vector(const at::Tensor& t) {
    const at::Tensor c = t.contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}
// An example's source and target (the decoder row after its start id).
SpanCorrupted parts(const Example& ex) {
    return {to_vector(field(ex, "source_ids")), std::vector<int64_t>(ex.ids.begin() + 1, ex.ids.end())};
}
const at::Tensor& extra(const HostBatch& b, const std::string& name) {
    for (const auto& [n, t] : b.extras)
        if (n == name) return t;
    throw std::runtime_error("no batch input " + name);
}

TEST(SpanCorruption, CountsFollowT5sFloat32RoundHalfToEven) {
    const SpanCorruptionConfig t5;  // 0.15, 3.0
    const auto counts = [&](int64_t n, SpanCorruptionConfig c = {}) {
        const SpanCounts s = span_counts(n, c);
        return std::make_pair(s.noise, s.spans);
    };
    EXPECT_EQ(counts(10), std::make_pair(int64_t{2}, int64_t{1}));  // round(1.5) = 2 (even)
    EXPECT_EQ(counts(30), std::make_pair(int64_t{4}, int64_t{1}));  // round(4.5) = 4 (even), 4/3 -> 1
    EXPECT_EQ(counts(20), std::make_pair(int64_t{3}, int64_t{1}));
    EXPECT_EQ(counts(100), std::make_pair(int64_t{15}, int64_t{5}));
    EXPECT_EQ(counts(512), std::make_pair(int64_t{77}, int64_t{26}));  // 76.8 -> 77, 25.67 -> 26
    // float32 as TensorFlow computes it: 190 * 0.15f = 28.500002 -> 29 (transformers' float64 copy: 28.5 -> 28).
    EXPECT_EQ(counts(190), std::make_pair(int64_t{29}, int64_t{10}));
    EXPECT_EQ(counts(350).first, 53);
    // At least one noise token and one kept token; a single token counts as two (T5's max(length, 2)).
    EXPECT_EQ(counts(2), std::make_pair(int64_t{1}, int64_t{1}));
    EXPECT_EQ(counts(1), std::make_pair(int64_t{1}, int64_t{1}));
    EXPECT_EQ(counts(3, {0.9, 1.0}), std::make_pair(int64_t{2}, int64_t{1}));  // round(2.7) = 3, clamped to 2
    EXPECT_EQ(counts(100, {0.5, 2.0}), std::make_pair(int64_t{50}, int64_t{25}));
    EXPECT_EQ(counts(12, {0.25, 2.0}), std::make_pair(int64_t{3}, int64_t{2}));  // 3 / 2 = 1.5 -> 2 (even)
    EXPECT_EQ(counts(20, {0.25, 2.0}), std::make_pair(int64_t{5}, int64_t{2}));  // 2.5 -> 2 (even)
    // Lengths follow from the counts alone: kept + sentinels + EOS, noise + sentinels + EOS.
    EXPECT_EQ(span_lengths(100, t5).source, 100 - 15 + 5 + 1);
    EXPECT_EQ(span_lengths(100, t5).target, 15 + 5 + 1);
    EXPECT_EQ(span_lengths(1, t5).source, 2);
    EXPECT_EQ(span_lengths(1, t5).target, 2);
}

TEST(SpanCorruption, MaskHasExactNoiseAndSpanCountsAndNoEmptySpans) {
    int random_layouts = 0;
    for (const SpanCorruptionConfig cfg : {SpanCorruptionConfig{}, SpanCorruptionConfig{0.3, 2.0}, SpanCorruptionConfig{0.5, 1.0}}) {
        for (int64_t n = 2; n <= 300; n += (n < 40 ? 1 : 7)) {
            std::mt19937_64 rng(span_mask_seed(3, 0, n, 0));
            const auto mask = random_spans_noise_mask(n, cfg, rng);
            ASSERT_EQ(static_cast<int64_t>(mask.size()), n);
            const SpanCounts c = span_counts(n, cfg);
            const Runs r = runs_of(mask);
            EXPECT_EQ(std::count(mask.begin(), mask.end(), true), c.noise) << n;
            EXPECT_EQ(static_cast<int64_t>(r.noise.size()), c.spans) << n;
            EXPECT_EQ(static_cast<int64_t>(r.kept.size()), c.spans) << n;  // interleaved, starting with kept
            EXPECT_FALSE(mask.front()) << n;
            EXPECT_TRUE(mask.back()) << n;  // the last span is noise (no random roll, as T5's span_corruption)
            std::mt19937_64 again(span_mask_seed(3, 0, n, 0));
            EXPECT_EQ(random_spans_noise_mask(n, cfg, again), mask);
            std::mt19937_64 other(span_mask_seed(3, 0, n, 1));
            random_layouts += random_spans_noise_mask(n, cfg, other) != mask;
        }
    }
    EXPECT_GT(random_layouts, 100);  // most lengths have many layouts; other epochs draw others
    // Every layout is reachable: 12 tokens at 0.25 / 2.0 are 3 noise tokens in 2 spans and 9
    // kept ones in 2: (2 noise splits) x (8 kept splits) = 16 masks, all drawn.
    std::set<std::vector<bool>> seen;
    for (int64_t e = 0; e < 400; ++e) {
        std::mt19937_64 rng(span_mask_seed(9, 0, 0, e));
        seen.insert(random_spans_noise_mask(12, {0.25, 2.0}, rng));
    }
    EXPECT_EQ(seen.size(), 16u);
    // One token: T5 masks two and keeps the first flag, so nothing is noise.
    std::mt19937_64 rng(1);
    EXPECT_EQ(random_spans_noise_mask(1, {}, rng), std::vector<bool>{false});
}

TEST(SpanCorruption, SourceAndTargetAreLaidOutAsT5s) {
    // The same tokens and mask through transformers' create_sentinel_ids + filter_input_ids
    // (run_t5_mlm_flax.py) give, with <extra_id_k> for the k-th sentinel:
    //   inputs [10 11 X0 14 15 16 X1 18 X2 </s>]  labels [X0 12 13 X1 17 X2 19 </s>]
    const auto x = test_sentinels(100);
    const std::vector<bool> mask = {false, false, true, true, false, false, false, true, false, true};
    const SpanCorrupted sc = corrupt_spans(iota_tokens(10), mask, x, kEos);
    EXPECT_EQ(sc.source, (std::vector<int64_t>{10, 11, x[0], 14, 15, 16, x[1], 18, x[2], kEos}));
    EXPECT_EQ(sc.target, (std::vector<int64_t>{x[0], 12, 13, x[1], 17, x[2], 19, kEos}));
    EXPECT_EQ(reassemble(sc, x), iota_tokens(10));
    // More runs than sentinels is an error, not a wrapped-around id.
    EXPECT_THROW(corrupt_spans(iota_tokens(10), mask, test_sentinels(2), kEos), std::runtime_error);
}

TEST(SpanCorruption, SourceAndTargetReassembleTheTextWithSentinelsInOrder) {
    const auto x = test_sentinels(100);
    for (const SpanCorruptionConfig cfg : {SpanCorruptionConfig{}, SpanCorruptionConfig{0.4, 2.5}}) {
        for (int64_t n : {2, 3, 7, 16, 31, 64, 100, 257}) {
            for (int64_t e = 0; e < 4; ++e) {
                std::mt19937_64 rng(span_mask_seed(42, 0, n, e));
                const auto tokens = iota_tokens(n, 100 + e);
                const auto mask = random_spans_noise_mask(n, cfg, rng);
                const SpanCorrupted sc = corrupt_spans(tokens, mask, x, kEos);
                EXPECT_EQ(reassemble(sc, x), tokens) << n;
                const SpanLengths len = span_lengths(n, cfg);
                EXPECT_EQ(static_cast<int64_t>(sc.source.size()), len.source) << n;
                EXPECT_EQ(static_cast<int64_t>(sc.target.size()), len.target) << n;
                // The source starts with kept text, the target with <extra_id_0>.
                EXPECT_EQ(sc.source[0], tokens[0]);
                EXPECT_EQ(sc.target[0], x[0]);
            }
        }
    }
    // A single token: kept, then EOS; the target is <extra_id_0> then EOS (T5's layout for it).
    std::mt19937_64 rng(1);
    const SpanCorrupted one = corrupt_spans({77}, random_spans_noise_mask(1, {}, rng), x, kEos);
    EXPECT_EQ(one.source, (std::vector<int64_t>{77, kEos}));
    EXPECT_EQ(one.target, (std::vector<int64_t>{x[0], kEos}));
}

TEST(SpanCorruption, TextRowsBecomeEncoderDecoderExamples) {
    const auto codec = TextCodec::for_model(sentinel_tokenizer("rows", 100), "");
    ASSERT_EQ(codec->eos_id(), 0);
    ASSERT_EQ(codec->token_to_id("<extra_id_0>").value_or(-1), 699);
    ASSERT_EQ(codec->token_to_id("<extra_id_99>").value_or(-1), 600);
    ASSERT_FALSE(codec->token_to_id("<extra_id_100>"));
    Corpus c = write_corpus("rows", 6, 50);
    {  // a prompt/completion row beside the text rows loads as it always did
        std::ofstream out(c.dir / "train.jsonl", std::ios::app);
        out << json{{"prompt", "fix: the dog run"}, {"completion", " the dog runs"}}.dump() << "\n";
    }
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 5;
    const Datasets d = load_datasets(span_config(c.dir / "train.jsonl"), reader, FT_LABELS_ALL, 7);
    ASSERT_EQ(d.train.size(), 7u);
    std::vector<int64_t> sentinels;
    for (int i = 0; i < 100; ++i) sentinels.push_back(699 - i);
    for (size_t i = 0; i < 6; ++i) {
        const Example& ex = d.train[i];
        ASSERT_TRUE(ex.span) << i;
        const auto tokens = codec->encode(c.texts[i], false);
        ASSERT_GE(tokens.size(), 50u);
        ASSERT_EQ(ex.fields.size(), 2u);
        EXPECT_EQ(ex.fields[0].name, "source_ids");
        EXPECT_EQ(ex.fields[1].name, "source_mask");
        const SpanCorrupted sc = parts(ex);
        EXPECT_TRUE(field(ex, "source_mask").equal(at::ones({static_cast<int64_t>(sc.source.size())}, at::kLong)));
        EXPECT_EQ(reassemble(sc, sentinels, codec->eos_id()), tokens) << i;
        const SpanCounts counts = span_counts(static_cast<int64_t>(tokens.size()), {});
        EXPECT_EQ(static_cast<int64_t>(sc.target.size()), counts.noise + counts.spans + 1);
        // The decoder row: its start id, then the target, every target token a label.
        EXPECT_EQ(ex.ids[0], 5);
        EXPECT_EQ(ex.labels[0], -100);
        EXPECT_EQ(std::vector<int64_t>(ex.labels.begin() + 1, ex.labels.end()), sc.target);
        EXPECT_EQ(ex.num_labels(), static_cast<int64_t>(sc.target.size()));
        EXPECT_EQ(ex.prompt_ids, (std::vector<int64_t>{5}));
    }
    EXPECT_FALSE(d.train[6].span);
    EXPECT_EQ(d.train[6].prompt_text, "fix: the dog run");
    // The same rows through an SFT policy: span corruption labels the whole target too.
    const Datasets sft = load_datasets(span_config(c.dir / "train.jsonl"), reader, FT_LABELS_COMPLETION, 7);
    EXPECT_EQ(sft.train[0].labels, d.train[0].labels);
}

TEST(SpanCorruption, MasksAreDeterministicPerSeedAndRow) {
    const auto codec = TextCodec::for_model(sentinel_tokenizer("seed", 100), "");
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 0;
    Corpus c = write_corpus("seed", 8, 60);
    const auto load = [&](uint64_t seed) { return load_datasets(span_config(c.dir / "train.jsonl"), reader, FT_LABELS_ALL, seed).train; };
    const auto a = load(11), b = load(11), other = load(12);
    int differs = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(parts(a[i]).source, parts(b[i]).source) << i;
        EXPECT_EQ(a[i].ids, b[i].ids) << i;
        differs += parts(a[i]).source != parts(other[i]).source;
    }
    EXPECT_GE(differs, 6);  // another seed, other masks
    // The seed mixes everything it is given: no two of these collide.
    std::set<uint64_t> seeds;
    for (uint64_t s : {0u, 1u})
        for (uint64_t stream : {0u, 1u})
            for (int64_t row : {0, 1, 2})
                for (int64_t epoch : {0, 1, 2}) seeds.insert(span_mask_seed(s, stream, row, epoch));
    EXPECT_EQ(seeds.size(), 36u);
    // A 20-token text at T5's settings has a single layout (3 noise tokens in one span at
    // the end): T5's mask is only random for longer texts.
    std::set<std::vector<bool>> layouts;
    for (int64_t e = 0; e < 50; ++e) {
        std::mt19937_64 rng(span_mask_seed(1, 0, 1, e));
        layouts.insert(random_spans_noise_mask(20, {}, rng));
    }
    EXPECT_EQ(layouts.size(), 1u);
}

TEST(SpanCorruption, EachEpochMasksAnewAndAResumedStreamSeesTheSameMasks) {
    const auto codec = TextCodec::for_model(sentinel_tokenizer("epochs", 100), "");
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 0;
    Corpus c = write_corpus("epochs", 8, 60);
    const Datasets d = load_datasets(span_config(c.dir / "train.jsonl"), reader, FT_LABELS_ALL, 3);
    BatchStream stream(d.train, 8, 512, false, false, 3);
    ASSERT_EQ(stream.batches_per_epoch(), 1);
    const HostBatch e0 = stream.next(), e1 = stream.next(), e2 = stream.next();
    // Epoch 0 is the loaded examples themselves.
    EXPECT_TRUE(e0.remasked.empty());
    for (int64_t r = 0; r < 8; ++r)
        EXPECT_EQ(to_vector(extra(e0, "source_ids")[r].narrow(0, 0, field(d.train[r], "source_ids").size(0))),
                  parts(d.train[r]).source);
    EXPECT_EQ(e1.remasked.size(), 8u);
    // Same lengths every epoch (they follow from the text's length), other masks.
    EXPECT_EQ(extra(e1, "source_ids").sizes(), extra(e0, "source_ids").sizes());
    EXPECT_EQ(e1.input_ids.sizes(), e0.input_ids.sizes());
    int rows_changed = 0, rows_changed_again = 0;
    const auto x = [&] {
        std::vector<int64_t> s;
        for (int i = 0; i < 100; ++i) s.push_back(*codec->token_to_id("<extra_id_" + std::to_string(i) + ">"));
        return s;
    }();
    for (int64_t r = 0; r < 8; ++r) {
        const int64_t S = field(d.train[r], "source_ids").size(0);
        const int64_t T = static_cast<int64_t>(d.train[r].ids.size());
        const auto src = [&](const HostBatch& b) { return to_vector(extra(b, "source_ids")[r].narrow(0, 0, S)); };
        const auto tgt = [&](const HostBatch& b) { return to_vector(b.input_ids[r].narrow(0, 1, T - 1)); };
        rows_changed += src(e1) != src(e0);
        rows_changed_again += src(e2) != src(e1);
        // The labels are the decoder row's own tokens; each epoch's pair still spells the text.
        EXPECT_TRUE(e1.labels[r].narrow(0, 1, T - 1).equal(e1.input_ids[r].narrow(0, 1, T - 1)));
        EXPECT_EQ(reassemble({src(e1), tgt(e1)}, x, codec->eos_id()), codec->encode(c.texts[static_cast<size_t>(r)], false)) << r;
        // remask_spans is what the stream applies; epoch 0 is the loaded mask.
        EXPECT_EQ(parts(remask_spans(d.train[r], 1)).source, src(e1));
        EXPECT_EQ(parts(remask_spans(d.train[r], 0)).source, parts(d.train[r]).source);
        EXPECT_EQ(remask_spans(d.train[r], 0).ids, d.train[r].ids);
    }
    EXPECT_GE(rows_changed, 7);
    EXPECT_GE(rows_changed_again, 7);
    // A stream resumed at epoch 1 (what a checkpoint's position restores) sees epoch 1's masks.
    BatchStream resumed(d.train, 8, 512, false, false, 3);
    resumed.seek({1, 0});
    const HostBatch r1 = resumed.next();
    EXPECT_TRUE(extra(r1, "source_ids").equal(extra(e1, "source_ids")));
    EXPECT_TRUE(r1.input_ids.equal(e1.input_ids));
    EXPECT_TRUE(r1.labels.equal(e1.labels));
    // Shuffled, the masks go with the rows: epoch 1's batch holds the same pairs in another order.
    BatchStream shuffled(d.train, 8, 512, false, true, 3);
    shuffled.next();
    const HostBatch s1 = shuffled.next();
    std::multiset<std::vector<int64_t>> a, b;
    for (int64_t r = 0; r < 8; ++r) a.insert(to_vector(extra(s1, "source_ids")[r])), b.insert(to_vector(extra(e1, "source_ids")[r]));
    EXPECT_EQ(a, b);
}

TEST(SpanCorruption, LongTextsAreTruncatedSoSourceAndTargetFit) {
    const auto codec = TextCodec::for_model(sentinel_tokenizer("trunc", 100), "");
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 0;
    Corpus c = write_corpus("trunc", 3, 120);
    const SpanCorruptionConfig t5;
    for (int64_t max_len : {40, 64, 100}) {
        const Datasets d = load_datasets(span_config(c.dir / "train.jsonl", max_len), reader, FT_LABELS_ALL, 1);
        const auto x = [&] {
            std::vector<int64_t> s;
            for (int i = 0; i < 100; ++i) s.push_back(*codec->token_to_id("<extra_id_" + std::to_string(i) + ">"));
            return s;
        }();
        for (size_t i = 0; i < 3; ++i) {
            const auto tokens = codec->encode(c.texts[i], false);
            ASSERT_GT(tokens.size(), 120u);
            const SpanCorrupted sc = parts(d.train[i]);
            EXPECT_LE(static_cast<int64_t>(sc.source.size() + sc.target.size()), max_len);
            const auto kept = reassemble(sc, x, codec->eos_id());
            // The longest prefix that fits: one more token would not.
            const int64_t n = static_cast<int64_t>(kept.size());
            EXPECT_EQ(kept, std::vector<int64_t>(tokens.begin(), tokens.begin() + n));
            const SpanLengths more = span_lengths(n + 1, t5);
            EXPECT_GT(more.source + more.target, max_len);
            EXPECT_EQ(n, span_corruption_prefix(static_cast<int64_t>(tokens.size()), max_len, t5));
        }
    }
    // 34 tokens: 5 noise in 2 spans, source 34 - 5 + 2 + 1 = 32, target 5 + 2 + 1 = 8: 40.
    // 35 tokens: 5 in 2 again, 33 + 8 = 41.
    EXPECT_EQ(span_corruption_prefix(100, 40, t5), 34);
    EXPECT_EQ(span_corruption_prefix(5, 3, t5), 0);  // not even one token fits (2 + 2)
}

TEST(SpanCorruption, RefusedWithoutSentinelsAnEncoderDecoderOrASequenceObjective) {
    Corpus c = write_corpus("refused", 2, 20);
    const auto message = [&](const InputReader& reader, ft_data_shape shape) {
        try {
            load_datasets(span_config(c.dir / "train.jsonl"), reader, FT_LABELS_ALL, 1, shape);
        } catch (const Error& e) {
            EXPECT_EQ(e.status(), FT_ERR_CONFIG);
            return std::string(e.what());
        }
        return std::string("no error");
    };
    InputReader bytes{TextCodec::bytes().get(), {}};
    bytes.decoder_start = 0;
    const std::string no_sentinels = message(bytes, FT_DATA_SEQUENCES);
    EXPECT_NE(no_sentinels.find("c.toml:13:1: [stage.data] span_corruption"), std::string::npos) << no_sentinels;
    EXPECT_NE(no_sentinels.find("no sentinel tokens <extra_id_0>"), std::string::npos) << no_sentinels;
    EXPECT_NE(no_sentinels.find("byte-level"), std::string::npos) << no_sentinels;

    const auto codec = TextCodec::for_model(sentinel_tokenizer("refused", 100), "");
    InputReader decoder{codec.get(), {}};  // decoder_start -1: a decoder-only model
    const std::string not_seq2seq = message(decoder, FT_DATA_SEQUENCES);
    EXPECT_NE(not_seq2seq.find("c.toml:13:1: [stage.data] span_corruption"), std::string::npos) << not_seq2seq;
    EXPECT_NE(not_seq2seq.find("encoder-decoder"), std::string::npos) << not_seq2seq;

    InputReader seq2seq{codec.get(), {}};
    seq2seq.decoder_start = 0;
    for (ft_data_shape shape : {FT_DATA_PAIRS, FT_DATA_FEEDBACK, FT_DATA_COMPLETIONS}) {
        const std::string pairs = message(seq2seq, shape);
        EXPECT_NE(pairs.find("c.toml:13:1: [stage.data] span_corruption"), std::string::npos) << pairs;
        EXPECT_NE(pairs.find("use cpt or sft"), std::string::npos) << pairs;
    }
    EXPECT_EQ(message(seq2seq, FT_DATA_SEQUENCES), "no error");

    // Without the key, a text row on an encoder-decoder still has no source, and says what to set.
    try {
        make_example(json{{"text", "the dog"}}, seq2seq, FT_LABELS_ALL, 64);
        FAIL() << "expected an error";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("span_corruption = true"), std::string::npos) << e.what();
    }
}

TEST(SpanCorruption, RowErrorsNameTheFileAndLine) {
    const auto codec = TextCodec::for_model(sentinel_tokenizer("few", 2), "");
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 0;
    const fs::path dir = temp_dir("span_rows");
    // Line 2 (110 words, over 100 tokens at 0.15 / 3.0) needs more than 2 spans; the tokenizer has two sentinels.
    write_file(dir / "train.jsonl", json{{"text", "a short one"}}.dump() + "\n" + json{{"text", sentence(110, 5)}}.dump() + "\n");
    const auto error_of = [&](const fs::path& file, int64_t max_len) {
        try {
            load_datasets(span_config(file, max_len), reader, FT_LABELS_ALL, 1);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    const std::string few = error_of(dir / "train.jsonl", 512);
    EXPECT_NE(few.find("train.jsonl:2: the text needs"), std::string::npos) << few;
    EXPECT_NE(few.find("the tokenizer has 2 (<extra_id_0> .. <extra_id_1>)"), std::string::npos) << few;
    // Short enough for two sentinels once truncated to a small max_seq_len: loads.
    EXPECT_EQ(error_of(dir / "train.jsonl", 24), "no error");
    write_file(dir / "empty.jsonl", json{{"text", ""}}.dump() + "\n");
    const std::string empty = error_of(dir / "empty.jsonl", 512);
    EXPECT_NE(empty.find("empty.jsonl:1: field 'text' has no tokens"), std::string::npos) << empty;
    const std::string tiny = error_of(dir / "train.jsonl", 3);
    EXPECT_NE(tiny.find("train.jsonl:1: max_seq_len = 3 leaves no room"), std::string::npos) << tiny;
}

TEST(SpanCorruption, TheCoeditCorpusThroughItsT5Tokenizer) {
    // data/coedit: T5's layout (</s> = 1, <extra_id_0> the last id), sentinels found by name.
    const fs::path data = fs::path(source_dir()) / "data/coedit";
    const auto codec = TextCodec::for_model(data / "tokenizer", "");
    EXPECT_EQ(codec->eos_id(), 1);
    EXPECT_EQ(codec->token_to_id("<extra_id_0>").value_or(-1), 510);
    EXPECT_EQ(codec->token_to_id("<extra_id_99>").value_or(-1), 411);
    InputReader reader{codec.get(), {}};
    reader.decoder_start = 0;  // T5's decoder_start_token_id: <pad>
    const fs::path dir = temp_dir("span_coedit");
    std::vector<std::vector<int64_t>> tokens;
    {
        std::ifstream in(data / "corpus.jsonl");
        std::ofstream out(dir / "corpus.jsonl");
        std::string line;
        for (int i = 0; i < 200 && std::getline(in, line); ++i) {
            out << line << "\n";
            tokens.push_back(codec->encode(json::parse(line)["text"].get<std::string>(), false));
        }
    }
    std::vector<int64_t> x;
    for (int i = 0; i < 100; ++i) x.push_back(510 - i);
    const auto spans_of = [](const Example& ex) {
        return std::count_if(ex.ids.begin(), ex.ids.end(), [](int64_t id) { return id >= 411; });
    };
    // T5's settings on these short sentences (up to 30 tokens: one span): always the last
    // round(0.15 n) tokens, in every epoch (T5 masks 512-token chunks of concatenated text).
    DataConfig cfg = span_config(dir / "corpus.jsonl", 64);
    const Datasets t5 = load_datasets(cfg, reader, FT_LABELS_ALL, 42);
    ASSERT_EQ(t5.train.size(), 200u);
    for (size_t i = 0; i < 200; ++i) {
        const Example& ex = t5.train[i];
        EXPECT_EQ(reassemble(parts(ex), x, 1), tokens[i]) << i;
        EXPECT_EQ(spans_of(ex), 1) << i;
        const size_t noise = static_cast<size_t>(span_counts(static_cast<int64_t>(tokens[i].size()), {}).noise);
        EXPECT_EQ(std::vector<int64_t>(ex.ids.begin() + 2, ex.ids.end() - 1),
                  std::vector<int64_t>(tokens[i].end() - static_cast<std::ptrdiff_t>(noise), tokens[i].end()));
        EXPECT_EQ(remask_spans(ex, 3).ids, ex.ids);
    }
    // Denser, shorter spans make them random: most rows get two or more, masked anew each epoch.
    cfg.noise_density = 0.3;
    cfg.mean_noise_span_length = 2.0;
    const Datasets dense = load_datasets(cfg, reader, FT_LABELS_ALL, 42);
    int several = 0, remasked = 0;
    for (size_t i = 0; i < 200; ++i) {
        const Example& ex = dense.train[i];
        EXPECT_EQ(reassemble(parts(ex), x, 1), tokens[i]) << i;
        several += spans_of(ex) >= 2;
        remasked += parts(remask_spans(ex, 1)).source != parts(ex).source;
    }
    EXPECT_GE(several, 190);
    EXPECT_GE(remasked, 150);
}

// ---- [stage.data] keys ---------------------------------------------------------------------

const PluginRegistry& toys() {
    static PluginRegistry reg = [] {
        PluginRegistry r;
        r.print_refusals = false;
        r.load_directory(plugin_dir());
        r.load_directory(toy_plugin_dir());
        return r;
    }();
    return reg;
}

// Line 13 is span_corruption, 14 the free line for another key.
const char* kSpanStage = R"([run]
output_dir = "out"
[[stage]]
name = "pre"
[stage.model]
plugin = "toy_seq2seq"
[stage.param]
plugin = "full"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "t.jsonl"
span_corruption = true
#
[stage.train]
steps = 1
)";

std::string with(std::string text, const std::string& from, const std::string& to) {
    const auto pos = text.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return text.replace(pos, from.size(), to);
}

std::vector<std::string> config_errors(const std::string& text, RunConfig* out = nullptr,
                                       const std::vector<std::string>& sets = {}) {
    const fs::path dir = temp_dir("span_config");
    write_file(dir / "c.toml", text);
    Diagnostics diag;
    RunConfig rc = load_run_config((dir / "c.toml").string(), sets, toys(), diag);
    if (out) *out = rc;
    return diag.errors;
}

void expect_one(const std::vector<std::string>& errors, const std::string& where, const std::string& what) {
    ASSERT_EQ(errors.size(), 1u) << (errors.empty() ? "no error" : errors[0] + (errors.size() > 1 ? " | " + errors[1] : ""));
    EXPECT_NE(errors[0].find(where), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find(what), std::string::npos) << errors[0];
}

TEST(SpanCorruption, ConfigKeysAreReadAndValidatedWithFileLineAndKey) {
    RunConfig rc;
    ASSERT_EQ(config_errors(kSpanStage, &rc), std::vector<std::string>{});
    const DataConfig& d = rc.stages.at(0).data;
    EXPECT_TRUE(d.span_corruption);
    EXPECT_DOUBLE_EQ(d.noise_density, 0.15);
    EXPECT_DOUBLE_EQ(d.mean_noise_span_length, 3.0);
    EXPECT_NE(d.span_corruption_where.find("c.toml:13:1"), std::string::npos) << d.span_corruption_where;
    ASSERT_EQ(config_errors(with(kSpanStage, "#", "noise_density = 0.3\nmean_noise_span_length = 2.5"), &rc),
              std::vector<std::string>{});
    EXPECT_DOUBLE_EQ(rc.stages.at(0).data.noise_density, 0.3);
    EXPECT_DOUBLE_EQ(rc.stages.at(0).data.mean_noise_span_length, 2.5);

    for (const char* bad : {"noise_density = 0.0", "noise_density = 1.0", "noise_density = -0.1"})
        expect_one(config_errors(with(kSpanStage, "#", bad)), "c.toml:14:1", "noise_density must be in (0, 1)");
    expect_one(config_errors(with(kSpanStage, "#", "mean_noise_span_length = 0.5")), "c.toml:14:1",
               "mean_noise_span_length must be at least 1");
    expect_one(config_errors(with(kSpanStage, "#", "noise_density = \"high\"")), "c.toml:14:1", "noise_density");
    expect_one(config_errors(kSpanStage, nullptr, {"stage.pre.data.noise_density=2.0"}), "c.toml", "noise_density must be in (0, 1)");
    // The settings without the key are a mistake, not silently unused.
    expect_one(config_errors(with(with(kSpanStage, "span_corruption = true", "span_corruption = false"), "#", "noise_density = 0.3")),
               "c.toml:14:1", "noise_density is a span_corruption setting");
    // A decoder-only model has no source to corrupt into.
    expect_one(config_errors(with(kSpanStage, "plugin = \"toy_seq2seq\"", "plugin = \"decoder\"\nhidden_size = 32")),
               "c.toml:14:1", "span_corruption = true needs an encoder-decoder");
    // Pairs, feedback and sampled completions are not single sequences.
    expect_one(config_errors(with(kSpanStage, "plugin = \"cpt\"", "plugin = \"dpo\"")), "c.toml:13:1",
               "span_corruption makes single source/target sequences (use cpt or sft)");
    ASSERT_EQ(config_errors(with(kSpanStage, "plugin = \"cpt\"", "plugin = \"sft\"")), std::vector<std::string>{});
}

TEST(SpanCorruption, AStageDirectoryTokenizerWithoutSentinelsIsRefusedAtValidation) {
    // init_from a checkpoint directory: its tokenizer is known before any stage runs.
    const fs::path qwen = fs::path(source_dir()) / "tests/fixtures/hf/qwen2_chat";
    const std::string stage = with(with(kSpanStage, "[stage.model]\nplugin = \"toy_seq2seq\"\n", ""), "name = \"pre\"",
                                   "name = \"pre\"\ninit_from = \"" + qwen.string() + "\"");
    const auto errors = config_errors(stage);
    ASSERT_EQ(errors.size(), 1u) << (errors.empty() ? "no error" : errors[0]);
    EXPECT_NE(errors[0].find("c.toml:12:1"), std::string::npos) << errors[0];  // the key's line
    EXPECT_NE(errors[0].find("has no sentinel tokens <extra_id_0>"), std::string::npos) << errors[0];
    // So is a fresh model's [[stage]] tokenizer directory; the CoEdIT one has them.
    const auto fresh = [&](const fs::path& tokenizer) {
        return config_errors(with(kSpanStage, "name = \"pre\"", "name = \"pre\"\ntokenizer = \"" + tokenizer.string() + "\""));
    };
    expect_one(fresh(qwen), "c.toml:14:1", "has no sentinel tokens <extra_id_0>");
    EXPECT_EQ(fresh(fs::path(source_dir()) / "data/coedit/tokenizer"), std::vector<std::string>{});
}

// A whole stage: a toy encoder-decoder with the CoEdIT tokenizer pre-trains on corpus rows
// (cpt) through validation, the stage start, re-masked epochs and a checkpoint; stopped
// and resumed, it logs the uninterrupted run's losses exactly.
TEST(SpanCorruption, AStageTrainsOnSpansAndResumesWithTheSameMasks) {
    at::set_num_threads(2);
    const fs::path dir = temp_dir("span_run");
    const fs::path data = fs::path(source_dir()) / "data/coedit";
    {
        std::ifstream in(data / "corpus.jsonl");
        std::ofstream train(dir / "train.jsonl"), eval(dir / "eval.jsonl");
        std::string line;
        for (int i = 0; i < 128 && std::getline(in, line); ++i) (i < 96 ? train : eval) << line << "\n";
        write_file(dir / "pairs.jsonl", "{\"prompt\": \"a b\", \"completion\": \"b a\"}\n");
    }
    const auto run_it = [&](const fs::path& cfg, const std::string& resume = "", int64_t stop_after = 0) {
        RunRequest req{cfg.string(), {}, resume, {}};
        req.stage_options.quiet = true;
        req.stage_options.stop_after_steps = stop_after;
        return run_command(req, toys());
    };
    // A starting model with room for the tokenizer's 511 ids, and the tokenizer beside it.
    write_file(dir / "base.toml", "[run]\noutput_dir = \"" + (dir / "base").string() + "\"\nseed = 3\n"
               "[[stage]]\nname = \"init\"\n[stage.model]\nplugin = \"toy_seq2seq\"\nvocab_size = 512\n"
               "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n"
               "[stage.data]\ntrain = \"" + (dir / "pairs.jsonl").string() + "\"\n[stage.train]\nsteps = 1\nbatch_size = 1\n");
    ASSERT_EQ(run_it(dir / "base.toml"), 0);
    const fs::path start = dir / "base/stages/init/final";
    for (const auto& f : fs::directory_iterator(data / "tokenizer")) fs::copy_file(f.path(), start / f.path().filename());
    const auto config = [&](const std::string& out) {
        return "[run]\noutput_dir = \"" + (dir / out).string() + "\"\nseed = 5\n[[stage]]\nname = \"pre\"\n"
               "init_from = \"" + start.string() + "\"\n[stage.param]\nplugin = \"full\"\n"
               "[stage.objective]\nplugin = \"cpt\"\n[stage.data]\ntrain = \"" + (dir / "train.jsonl").string() +
               "\"\neval = \"" + (dir / "eval.jsonl").string() + "\"\nmax_seq_len = 64\nspan_corruption = true\n"
               "noise_density = 0.3\nmean_noise_span_length = 2.0\n[stage.train]\nsteps = 24\nbatch_size = 16\n"
               "lr = 3e-3\nlog_every = 1\ncheckpoint_every = 12\n";
    };
    write_file(dir / "a.toml", config("a"));
    write_file(dir / "b.toml", config("b"));
    ASSERT_EQ(run_it(dir / "a.toml"), 0);
    ASSERT_EQ(run_it(dir / "b.toml", "", 15), 3);  // interrupted after step 15; checkpoint at 12
    ASSERT_EQ(run_it(dir / "b.toml", (dir / "b").string()), 0);
    const auto losses = [&](const std::string& out) {
        std::vector<double> l;
        std::ifstream in(dir / out / "metrics.jsonl");
        for (std::string line; std::getline(in, line);) {
            const auto m = json::parse(line);
            if (m["stage"] == "pre" && m.contains("loss")) l.push_back(m["loss"].get<double>());
        }
        return l;
    };
    const auto la = losses("a"), lb = losses("b");
    ASSERT_EQ(la.size(), 24u);  // 96 rows in batches of 16: epochs 0-3, three of them re-masked
    EXPECT_EQ(la, lb);
    EXPECT_LT((la[20] + la[21] + la[22] + la[23]) / 4, la[0]) << "span prediction did not learn";
    std::cerr << "span corruption, toy seq2seq: loss " << la[0] << " -> " << la[23] << "\n";
    const auto summary = json::parse(read_text(dir / "a/summary.json"));
    EXPECT_EQ(summary["stages"][0]["status"], "completed");
    EXPECT_TRUE(std::isfinite(summary["stages"][0]["eval"]["loss"].get<double>()));
    EXPECT_EQ(summary["stages"][0]["eval"], json::parse(read_text(dir / "b/summary.json"))["stages"][0]["eval"]);

    // The same stage on a fresh model reads text with the byte tokenizer, which has no
    // sentinels: refused when the stage starts, naming the key's line.
    write_file(dir / "fresh.toml", with(config("fresh"), "init_from = \"" + start.string() + "\"\n",
                                        "[stage.model]\nplugin = \"toy_seq2seq\"\n"));
    std::string err = "no error";
    try {
        run_it(dir / "fresh.toml");
    } catch (const Error& e) {
        err = e.what();
        EXPECT_EQ(e.status(), FT_ERR_CONFIG);
    }
    EXPECT_NE(err.find("fresh.toml:16:1: [stage.data] span_corruption: the stage's tokenizer (byte-level"), std::string::npos)
        << err;
    EXPECT_NE(err.find("no sentinel tokens <extra_id_0>"), std::string::npos) << err;
}

}  // namespace
}  // namespace fthost::test
