// span_corruption.hpp — T5's pre-training objective ([stage.data] span_corruption) for an
// encoder-decoder (FT_INPUT_SOURCE): a 'text' row's tokens become a source with random
// spans replaced by sentinels and a target that spells the spans out,
//   tokens  a b c d e f g h i j       noise  . . x x . . . x . x
//   source  a b <extra_id_0> e f g <extra_id_1> i <extra_id_2> </s>
//   target  <extra_id_0> c d <extra_id_1> h <extra_id_2> j </s>
// as t5/data/preprocessors.py makes them (span_corruption: random_spans_noise_mask,
// noise_span_to_unique_sentinel for the inputs, nonnoise_span_to_unique_sentinel for the
// targets, EOS after each) and transformers' examples/flax/language-modeling/
// run_t5_mlm_flax.py copies. The masks spans alternate non-noise / noise starting with
// non-noise, so the last span is noise and the target ends with that span's tokens and
// EOS — no trailing sentinel (the paper's figure has one only because its drawn mask
// ends with kept text; neither implementation does that).
//
// Counts follow T5 exactly, in float32 with round-half-to-even as tf.round does:
//   num_noise = clamp(round(max(len, 2) * noise_density), 1, max(len, 2) - 1)
//   num_spans = max(1, round(num_noise / mean_noise_span_length))
// (transformers' copy computes in float64: it differs only where the float32 product
// lands on the other side of .5, e.g. 190 tokens at 0.15: T5 29, transformers 28). Each
// of num_noise and the non-noise count is split into num_spans non-empty segments by
// T5's _random_segmentation (a shuffled indicator of num_spans - 1 segment starts among
// the items after the first). The shuffles are fthost's own Fisher-Yates on an
// mt19937_64 seeded from ([run] seed, the file, the row's line, the epoch), so every
// epoch masks each row anew (as T5's pipeline re-masks on every pass), the same way on
// every run and after a resume; the random numbers are not TensorFlow's.
#pragma once

#include "data/example.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace fthost::host {

struct SpanCorruptionConfig {
    double noise_density = 0.15;
    double mean_noise_span_length = 3.0;
};

// How many of `length` tokens are noise and in how many spans (T5's counts, above).
struct SpanCounts {
    int64_t noise = 0, spans = 0;
};
SpanCounts span_counts(int64_t length, const SpanCorruptionConfig& cfg);

// T5's random_spans_noise_mask: `length` flags, true on noise; span_counts(length)
// noise tokens in exactly that many noise spans, each preceded by a non-empty non-noise
// span. length >= 1 (a single token is never noise: T5 masks max(length, 2) and keeps
// the first `length` flags).
std::vector<bool> random_spans_noise_mask(int64_t length, const SpanCorruptionConfig& cfg, std::mt19937_64& rng);

// The seed of one row's mask in one epoch. `stream` tells files apart (train 0, eval 1).
uint64_t span_mask_seed(uint64_t seed, uint64_t stream, int64_t row, int64_t epoch);

struct SpanCorrupted {
    std::vector<int64_t> source, target;
};
// tokens with each run of noise replaced by the next sentinel, then EOS (the source);
// each run of non-noise replaced by the next sentinel, then EOS (the target).
// sentinels[i] is <extra_id_i>'s id; throws when the mask has more runs than sentinels.
SpanCorrupted corrupt_spans(const std::vector<int64_t>& tokens, const std::vector<bool>& noise,
                            const std::vector<int64_t>& sentinels, int64_t eos);

// Source and target lengths of a `length`-token text (they do not depend on the mask).
struct SpanLengths {
    int64_t source = 0, target = 0;
};
SpanLengths span_lengths(int64_t length, const SpanCorruptionConfig& cfg);

// The most leading tokens of a `length`-token text whose source and target together fit
// in max_seq_len (the host's bound on an encoder-decoder row: prompt + completion); 0
// when not even one token fits.
int64_t span_corruption_prefix(int64_t length, int64_t max_seq_len, const SpanCorruptionConfig& cfg);

// What a span-corrupted example needs to be masked again for another epoch.
struct SpanRow {
    struct Setup {
        SpanCorruptionConfig cfg;
        std::vector<int64_t> sentinels;  // <extra_id_0>, <extra_id_1>, ...
        int64_t eos = 0, decoder_start = 0;
        uint64_t seed = 0;
    };
    std::shared_ptr<const Setup> setup;
    std::vector<int64_t> tokens;  // the text's tokens (truncated to fit)
    uint64_t stream = 0;
    int64_t row = 0;  // the row's line in its file
};

// A stage's span corruption: its settings and the stage tokenizer's sentinels.
class SpanCorruption {
public:
    // Throws a config error naming `where` (the key's file:line:column) and
    // [stage.data] span_corruption when the reader is not an encoder-decoder's that reads
    // text, when the tokenizer has no <extra_id_0>, or when the objective's rows are not
    // single sequences.
    SpanCorruption(const SpanCorruptionConfig& cfg, const InputReader& reader, uint64_t seed, ft_data_shape shape,
                   const std::string& where);
    // Rows of the span-corruption shape: a 'text' row with no prompt, completion or messages.
    static bool applies_to(const nlohmann::json& row);
    // The row as its epoch-0 example: ids = decoder start + target, labels on the target,
    // the source as the fields "source_ids" / "source_mask" (before the model's own fields).
    Example example(const nlohmann::json& row, int64_t line, uint64_t stream, ft_label_policy policy,
                    int64_t max_seq_len) const;
    const std::vector<int64_t>& sentinels() const { return setup_->sentinels; }

private:
    const InputReader* reader_;
    std::string where_;
    std::shared_ptr<const SpanRow::Setup> setup_;
};

// The span-corrupted example `ex` with the mask of `epoch` (its tokens, labels and source
// fields replaced; everything else kept). An example without a SpanRow is returned as it is.
Example remask_spans(const Example& ex, int64_t epoch);

}  // namespace fthost::host
