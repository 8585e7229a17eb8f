// toy_seq2seq — a test-only encoder-decoder (FT_INPUT_TEXT | FT_INPUT_SOURCE): the host
// tokenizes a row's prompt as the encoder's source ("source_ids", "source_mask") and its
// completion as the decoder's row after the start id, labelled as for a decoder. A
// bidirectional encoder reads the source, a causal decoder cross-attends to it. With the
// KV cache the encoder runs once, in the prefill, and each layer's cross-attention keys
// and values stay in the cache for every decode step — and, when a prompt is sampled
// several times, for all its samples (cache_select_rows). What T5 does, at toy size.
#include "toy_transformer.hpp"

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("vocab_size", FT_OPT_INT, "260", "vocabulary size (the host sets its tokenizer's size unless given)"),
    option("hidden_size", FT_OPT_INT, "32", "model width"),
    option("num_layers", FT_OPT_INT, "2", "layers of the encoder and of the decoder"),
    option("num_heads", FT_OPT_INT, "4", "attention heads"),
    option("max_positions", FT_OPT_INT, "64", "longest source and longest target"),
    option("decoder_start_token_id", FT_OPT_INT, "0", "the token the decoder starts from"),
};

class ToySeq2Seq : public toys::ToyModel {
public:
    static constexpr uint32_t inputs = FT_INPUT_TEXT | FT_INPUT_SOURCE;

    ToySeq2Seq(const fthost::Host&, const fthost::Config& cfg)
        : vocab_(cfg.get_int("vocab_size")),
          hidden_(cfg.get_int("hidden_size")),
          max_pos_(cfg.get_int("max_positions")),
          start_(cfg.get_int("decoder_start_token_id")),
          encoder_(hidden_, cfg.get_int("num_heads"), cfg.get_int("num_layers"), prefixed_linear("encoder."),
                   prefixed_param("encoder."), /*cross=*/false, /*causal=*/false),
          decoder_(hidden_, cfg.get_int("num_heads"), cfg.get_int("num_layers"), prefixed_linear("decoder."),
                   prefixed_param("decoder."), /*cross=*/true) {
        validate(cfg);
        embed_ = param("shared.weight", at::randn({vocab_, hidden_}) * 0.02);
        positions_ = param("embed_positions.weight", at::randn({max_pos_, hidden_}) * 0.02);
        head_ = param("lm_head.weight", at::randn({vocab_, hidden_}) * 0.02);
    }

    static void validate(const fthost::Config& cfg) {
        for (const char* k : {"vocab_size", "hidden_size", "num_layers", "num_heads", "max_positions"})
            if (cfg.get_int(k) < 1) cfg.fail(k, "must be positive");
        if (cfg.get_int("hidden_size") % cfg.get_int("num_heads") != 0) cfg.fail("num_heads", "must divide hidden_size");
        const int64_t start = cfg.get_int("decoder_start_token_id");
        if (start < 0 || start >= cfg.get_int("vocab_size")) cfg.fail("decoder_start_token_id", "must be a token id");
    }

    at::Tensor forward(const fthost::BatchView& b) {
        const at::Tensor& mask = b.extra("source_mask");
        return decoder_.forward(decoder_inputs(b), b.sequence_ids.ge(0), encode(b.extra("source_ids"), mask), mask.ne(0));
    }

    // The prefill carries the source: the encoder runs, its keys and values go into the
    // cache; decode steps carry only the decoder's newest token.
    at::Tensor forward_cached(const fthost::BatchView& b, fthost::KvCache& cache) {
        const auto src = b.extras.find("source_ids");
        if (src == b.extras.end()) return decoder_.forward_cached(decoder_inputs(b), b.sequence_ids.ge(0), cache);
        const at::Tensor& mask = b.extras.at("source_mask");
        return decoder_.forward_cached(decoder_inputs(b), b.sequence_ids.ge(0), cache, encode(src->second, mask), mask.ne(0));
    }

    at::Tensor lm_head(const at::Tensor& hidden) { return at::linear(hidden, head_); }
    int64_t vocab_size() const { return vocab_; }
    int64_t decoder_start_id() const { return start_; }

private:
    at::Tensor embed(const at::Tensor& ids, const at::Tensor& positions) const {
        return at::embedding(embed_, ids) + at::embedding(positions_, positions.clamp_max(max_pos_ - 1));
    }
    at::Tensor encode(const at::Tensor& ids, const at::Tensor& mask) {
        const at::Tensor pos = at::arange(ids.size(1), ids.options()).unsqueeze(0).expand_as(ids);
        return encoder_.forward(embed(ids, pos), mask.ne(0));
    }
    at::Tensor decoder_inputs(const fthost::BatchView& b) const { return embed(b.input_ids, b.position_ids); }

    std::function<fthost::LinearSite&(const std::string&, int64_t, int64_t)> prefixed_linear(const std::string& p) {
        return [this, p](const std::string& n, int64_t in, int64_t out) -> fthost::LinearSite& { return linear(p + n, in, out); };
    }
    std::function<at::Tensor(const std::string&, at::Tensor)> prefixed_param(const std::string& p) {
        return [this, p](const std::string& n, at::Tensor t) { return param(p + n, std::move(t)); };
    }

    int64_t vocab_, hidden_, max_pos_, start_;
    toys::ToyTransformer encoder_, decoder_;
    at::Tensor embed_, positions_, head_;
};

}  // namespace

FTHOST_MODEL(toy_seq2seq, ToySeq2Seq, "toy_seq2seq", "0.1.0",
             "test-only encoder-decoder: a bidirectional encoder, a decoder cross-attending to it", kOptions);
FTHOST_PLUGINS(toy_seq2seq)
