// t5 — Hugging Face's T5ForConditionalGeneration (T5 v1.0, v1.1, FLAN-T5): a bidirectional
// encoder over the source and a causal decoder cross-attending to it, both pre-norm with
// T5's RMS layer norm (no mean, no bias), attention without 1/sqrt(d) scaling over a
// relative position bias that the first block of each stack owns and every block reuses,
// a ReLU or gated-GELU feed-forward, num_heads * d_kv free of d_model, and a head tied to
// shared.weight (outputs rescaled by d_model^-0.5 when scale_decoder_outputs) or its own
// lm_head.weight. Every projection is a linear site under Hugging Face's names (q, k, v,
// o, wi, wi_0, wi_1, wo), so adapters apply unchanged; PEFT's default targets are q and v.
//
// The host lays rows out as an encoder-decoder (FT_INPUT_SOURCE): the prompt is the
// source ("source_ids", "source_mask"), the decoder's row starts with
// decoder_start_token_id. With the KV cache the encoder runs once, in the prefill; each
// decoder layer's cross-attention keys and values stay in the cache for every step and
// for every sample drawn from the same prompt. Decoder positions are cache slots: a
// decoder row always starts at slot 0 with the start token.
#include "hf_config.hpp"

#include <fthost/torch.hpp>

#include <cmath>
#include <limits>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("vocab_size", FT_OPT_INT, "32128", "vocabulary size (the host sets its tokenizer's size unless given)"),
    option("d_model", FT_OPT_INT, "512", "model width"),
    option("d_kv", FT_OPT_INT, "64", "width of one attention head (num_heads * d_kv need not equal d_model)"),
    option("d_ff", FT_OPT_INT, "2048", "feed-forward width"),
    option("num_layers", FT_OPT_INT, "6", "encoder blocks"),
    option("num_decoder_layers", FT_OPT_INT, "0", "decoder blocks (0 = num_layers)"),
    option("num_heads", FT_OPT_INT, "8", "attention heads"),
    option("relative_attention_num_buckets", FT_OPT_INT, "32", "relative position buckets"),
    option("relative_attention_max_distance", FT_OPT_INT, "128", "distance from which all positions share a bucket"),
    option("layer_norm_epsilon", FT_OPT_FLOAT, "1e-6", "T5 layer norm epsilon"),
    option("feed_forward_proj", FT_OPT_STRING, "\"gated-gelu\"",
           "relu, gelu, gelu_new, silu, or gated-<one of those>; gated-gelu is gelu_new (tanh), as in transformers"),
    option("tie_word_embeddings", FT_OPT_BOOL, "false", "the head is shared.weight (no lm_head.weight)"),
    option("scale_decoder_outputs", FT_OPT_BOOL, "false", "multiply the decoder's output by d_model^-0.5 before the head"),
    option("decoder_start_token_id", FT_OPT_INT, "0", "the token the decoder starts from (T5: the pad id)"),
    option("initializer_factor", FT_OPT_FLOAT, "1.0", "scale of transformers' T5 initialisation"),
};

enum class Act { relu, gelu, gelu_new, silu };

// feed_forward_proj as transformers reads it: [gated-]<act>, where gated-gelu means gelu_new.
std::pair<bool, Act> parse_feed_forward(const std::string& s, bool* ok = nullptr) {
    const bool gated = s.rfind("gated-", 0) == 0;
    const std::string act = gated ? s.substr(6) : s;
    if (ok) *ok = true;
    if (act == "relu") return {gated, Act::relu};
    if (act == "gelu") return {gated, gated ? Act::gelu_new : Act::gelu};
    if (act == "gelu_new") return {gated, Act::gelu_new};
    if (act == "silu" || act == "swish") return {gated, Act::silu};
    if (ok) *ok = false;
    return {gated, Act::relu};
}

class T5 : public fthost::ModelBase {
public:
    static constexpr uint32_t inputs = FT_INPUT_TEXT | FT_INPUT_SOURCE;

    T5(const fthost::Host&, const fthost::Config& cfg)
        : vocab_(cfg.get_int("vocab_size")),
          d_model_(cfg.get_int("d_model")),
          d_kv_(cfg.get_int("d_kv")),
          heads_(cfg.get_int("num_heads")),
          buckets_(cfg.get_int("relative_attention_num_buckets")),
          max_distance_(cfg.get_int("relative_attention_max_distance")),
          eps_(cfg.get_float("layer_norm_epsilon")),
          tied_(cfg.get_bool("tie_word_embeddings")),
          scale_(cfg.get_bool("scale_decoder_outputs")),
          start_(cfg.get_int("decoder_start_token_id")) {
        validate(cfg);
        std::tie(gated_, act_) = parse_feed_forward(cfg.get_string("feed_forward_proj"));
        const double f = cfg.get_float("initializer_factor");
        const int64_t d_ff = cfg.get_int("d_ff"), enc = cfg.get_int("num_layers");
        const int64_t dec = cfg.get_int("num_decoder_layers") > 0 ? cfg.get_int("num_decoder_layers") : enc;
        shared_ = param("shared.weight", {vocab_, d_model_}, f * 1.0);
        for (int64_t i = 0; i < enc; ++i) encoder_.push_back(block("encoder.block." + std::to_string(i) + ".", i == 0, false, d_ff, f));
        encoder_norm_ = ones("encoder.final_layer_norm.weight");
        for (int64_t i = 0; i < dec; ++i) decoder_.push_back(block("decoder.block." + std::to_string(i) + ".", i == 0, true, d_ff, f));
        decoder_norm_ = ones("decoder.final_layer_norm.weight");
        if (!tied_) lm_head_ = param("lm_head.weight", {vocab_, d_model_}, f * 1.0);
    }

    static void validate(const fthost::Config& cfg) {
        for (const char* k : {"vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                              "relative_attention_num_buckets", "relative_attention_max_distance"})
            if (cfg.get_int(k) < 1) cfg.fail(k, "must be positive");
        if (cfg.get_int("num_decoder_layers") < 0) cfg.fail("num_decoder_layers", "must be 0 (= num_layers) or positive");
        if (cfg.get_int("relative_attention_num_buckets") < 4)
            cfg.fail("relative_attention_num_buckets", "must be at least 4 (half per direction, half of those exact)");
        if (cfg.get_float("layer_norm_epsilon") <= 0) cfg.fail("layer_norm_epsilon", "must be positive");
        bool ok = false;
        parse_feed_forward(cfg.get_string("feed_forward_proj"), &ok);
        if (!ok)
            cfg.fail("feed_forward_proj", "must be relu, gelu, gelu_new, silu or gated-<one of those> (got \"" +
                                              cfg.get_string("feed_forward_proj") + "\")");
        const int64_t start = cfg.get_int("decoder_start_token_id");
        if (start < 0 || start >= cfg.get_int("vocab_size")) cfg.fail("decoder_start_token_id", "must be a token id");
    }

    // Teacher forcing: the encoder over the source, the decoder over its rows.
    at::Tensor forward(const fthost::BatchView& b) {
        const at::Tensor& src_mask = b.extra("source_mask");
        const at::Tensor memory = encode(b.extra("source_ids"), src_mask);
        const at::Tensor cross = key_mask(src_mask.ne(0), memory).unsqueeze(1).unsqueeze(1);
        const at::Tensor& pos = b.position_ids;
        const at::Tensor valid = b.sequence_ids.ge(0);
        const at::Tensor causal = pos.unsqueeze(1).le(pos.unsqueeze(2)) & valid.unsqueeze(1);  // [B, q, k]
        at::Tensor x = at::embedding(shared_, b.input_ids);
        const at::Tensor self_bias = relative_bias(decoder_[0], pos, pos, false) + key_mask(causal, x).unsqueeze(1);
        for (size_t i = 0; i < decoder_.size(); ++i) x = decoder_block(i, x, self_bias, memory, cross, nullptr);
        return rms_norm(x, decoder_norm_);
    }

    // The prefill carries the source: the encoder runs and each layer's cross-attention
    // keys and values go into the cache; later steps carry only the newest token.
    at::Tensor forward_cached(const fthost::BatchView& b, fthost::KvCache& cache) {
        at::Tensor memory, cross;
        if (auto src = b.extras.find("source_ids"); src != b.extras.end()) {
            const at::Tensor& src_mask = b.extras.at("source_mask");
            memory = encode(src->second, src_mask);
            cache.set_cross_valid(src_mask.ne(0));
        }
        at::Tensor x = at::embedding(shared_, b.input_ids);
        const at::Tensor allowed = cache.extend(b.sequence_ids.ge(0)).squeeze(1);  // [B, t, span]
        const at::Tensor keys = at::arange(allowed.size(2), b.position_ids.options()).unsqueeze(0);
        const at::Tensor self_bias =
            relative_bias(decoder_[0], b.position_ids, keys.expand({x.size(0), keys.size(1)}), false) +
            key_mask(allowed, x).unsqueeze(1);
        cross = key_mask(cache.cross_mask().squeeze(1).squeeze(1), x).unsqueeze(1).unsqueeze(1);
        for (size_t i = 0; i < decoder_.size(); ++i) x = decoder_block(i, x, self_bias, memory, cross, &cache);
        return rms_norm(x, decoder_norm_);
    }

    at::Tensor lm_head(const at::Tensor& hidden) {
        const at::Tensor h = scale_ ? hidden * std::pow(static_cast<double>(d_model_), -0.5) : hidden;
        return at::linear(h, tied_ ? shared_ : lm_head_);
    }
    int64_t vocab_size() const { return vocab_; }
    int64_t decoder_start_id() const { return start_; }

    static constexpr const char* hf_architectures[] = {"T5ForConditionalGeneration", nullptr};
    static std::string options_from_hf_checkpoint(const std::string& config_json, const std::vector<std::string>& names) {
        return t5_options_from_hf_checkpoint(config_json, names);
    }
    // Old checkpoints store the embedding under each stack's name too, and one stray
    // relative bias in the decoder's first cross-attention that transformers ignores.
    static constexpr const char* hf_extra_tensors[] = {
        "encoder.embed_tokens.weight=shared.weight", "decoder.embed_tokens.weight=shared.weight",
        "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", nullptr};
    static constexpr const char* default_adapter_targets[] = {"q", "v", nullptr};

private:
    struct Attention {
        fthost::LinearSite *q, *k, *v, *o;
        at::Tensor norm;
    };
    struct Block {
        Attention self, cross;  // cross only in the decoder
        at::Tensor relative_bias;  // [buckets, heads], first block only
        fthost::LinearSite *wi = nullptr, *wi_0 = nullptr, *wi_1 = nullptr, *wo = nullptr;
        at::Tensor ff_norm;
    };

    // Parameters as transformers' T5PreTrainedModel._init_weights draws them.
    Block block(const std::string& p, bool first, bool decoder, int64_t d_ff, double f) {
        Block b;
        b.self = attention(p + "layer.0.SelfAttention.", p + "layer.0.layer_norm.weight", f);
        if (first) b.relative_bias = param(p + "layer.0.SelfAttention.relative_attention_bias.weight", {buckets_, heads_},
                                          f * std::pow(static_cast<double>(d_model_), -0.5));
        if (decoder) b.cross = attention(p + "layer.1.EncDecAttention.", p + "layer.1.layer_norm.weight", f);
        const std::string ff = p + "layer." + (decoder ? "2" : "1") + ".";
        const double in_std = f * std::pow(static_cast<double>(d_model_), -0.5);
        if (gated_) {
            b.wi_0 = &linear(ff + "DenseReluDense.wi_0", d_model_, d_ff, in_std);
            b.wi_1 = &linear(ff + "DenseReluDense.wi_1", d_model_, d_ff, in_std);
        } else {
            b.wi = &linear(ff + "DenseReluDense.wi", d_model_, d_ff, in_std);
        }
        b.wo = &linear(ff + "DenseReluDense.wo", d_ff, d_model_, f * std::pow(static_cast<double>(d_ff), -0.5));
        b.ff_norm = ones(ff + "layer_norm.weight");
        return b;
    }

    Attention attention(const std::string& p, const std::string& norm, double f) {
        const int64_t inner = heads_ * d_kv_;
        const double d = static_cast<double>(d_model_);
        Attention a;
        a.q = &linear(p + "q", d_model_, inner, f * std::pow(d * static_cast<double>(d_kv_), -0.5));
        a.k = &linear(p + "k", d_model_, inner, f * std::pow(d, -0.5));
        a.v = &linear(p + "v", d_model_, inner, f * std::pow(d, -0.5));
        a.o = &linear(p + "o", inner, d_model_, f * std::pow(static_cast<double>(inner), -0.5));
        a.norm = ones(norm);
        return a;
    }

    at::Tensor encode(const at::Tensor& ids, const at::Tensor& mask) {
        const at::Tensor pos = at::arange(ids.size(1), ids.options()).unsqueeze(0).expand_as(ids);
        at::Tensor x = at::embedding(shared_, ids);
        const at::Tensor keys = key_mask(mask.ne(0).unsqueeze(1).expand({ids.size(0), ids.size(1), ids.size(1)}), x);
        const at::Tensor bias = relative_bias(encoder_[0], pos, pos, true) + keys.unsqueeze(1);
        for (const Block& b : encoder_) {
            x = x + attend(b.self, rms_norm(x, b.self.norm), bias, nullptr, 0, {});
            x = x + feed_forward(b, rms_norm(x, b.ff_norm));
        }
        return rms_norm(x, encoder_norm_);
    }

    at::Tensor decoder_block(size_t i, at::Tensor x, const at::Tensor& self_bias, const at::Tensor& memory,
                             const at::Tensor& cross_mask, fthost::KvCache* cache) {
        const Block& b = decoder_[i];
        x = x + attend(b.self, rms_norm(x, b.self.norm), self_bias, cache, i, {});
        x = x + attend(b.cross, rms_norm(x, b.cross.norm), cross_mask, cache, i, memory, /*cross=*/true);
        return x + feed_forward(b, rms_norm(x, b.ff_norm));
    }

    at::Tensor heads(const at::Tensor& t) const { return t.view({t.size(0), t.size(1), heads_, d_kv_}).transpose(1, 2); }

    // softmax(q kᵀ + bias) v with no 1/sqrt(d_kv): T5 folds that into its initialisation.
    // Self-attention appends to the cache; cross-attention projects `memory` (the prefill,
    // or teacher forcing) or reads the cache's keys and values from the prefill.
    at::Tensor attend(const Attention& a, const at::Tensor& h, const at::Tensor& bias, fthost::KvCache* cache, size_t layer,
                      const at::Tensor& memory, bool cross = false) const {
        const int64_t B = h.size(0), T = h.size(1);
        const at::Tensor q = heads((*a.q)(h));
        at::Tensor k, v;
        if (!cross) {
            k = heads((*a.k)(h)), v = heads((*a.v)(h));
            if (cache) std::tie(k, v) = cache->append(layer, k, v);
        } else if (memory.defined()) {
            k = heads((*a.k)(memory)), v = heads((*a.v)(memory));
            if (cache) cache->set_cross(layer, k, v);
        } else {
            std::tie(k, v) = cache->cross(layer);
        }
        at::Tensor scores = at::matmul(q, k.transpose(2, 3)) + bias;
        const at::Tensor w = at::softmax(scores, -1).to(v.scalar_type());
        return (*a.o)(at::matmul(w, v).transpose(1, 2).reshape({B, T, heads_ * d_kv_}));
    }

    at::Tensor feed_forward(const Block& b, const at::Tensor& h) const {
        at::Tensor x = gated_ ? activation((*b.wi_0)(h)) * (*b.wi_1)(h) : activation((*b.wi)(h));
        return (*b.wo)(x);
    }

    at::Tensor activation(const at::Tensor& x) const {
        switch (act_) {
            case Act::relu: return at::relu(x);
            case Act::gelu: return at::gelu(x);
            case Act::gelu_new: return at::gelu(x, "tanh");
            case Act::silu: return at::silu(x);
        }
        return x;
    }

    // The relative position bias [B, heads, q, k] for query positions `q` [B, Tq] and key
    // positions `k` [B, Tk], from the first block's embedding.
    at::Tensor relative_bias(const Block& first, const at::Tensor& q, const at::Tensor& k, bool bidirectional) const {
        const at::Tensor rel = k.unsqueeze(1) - q.unsqueeze(2);  // key - query, [B, Tq, Tk]
        return at::embedding(first.relative_bias, bucket(rel, bidirectional)).permute({0, 3, 1, 2});
    }

    // transformers' T5Attention._relative_position_bucket, op for op (float32 logarithm,
    // truncation toward zero), so every bucket equals the reference's.
    at::Tensor bucket(at::Tensor rel, bool bidirectional) const {
        int64_t n = buckets_;
        at::Tensor out = at::zeros_like(rel);
        if (bidirectional) {
            n /= 2;
            out = out + rel.gt(0).to(at::kLong) * n;
            rel = rel.abs();
        } else {
            rel = -at::minimum(rel, at::zeros_like(rel));
        }
        const int64_t exact = n / 2;
        const at::Tensor small = rel.lt(exact);
        at::Tensor large = (at::log(rel.to(at::kFloat) / static_cast<double>(exact)) /
                            std::log(static_cast<double>(max_distance_) / static_cast<double>(exact)) *
                            static_cast<double>(n - exact))
                               .to(at::kLong) +
                           exact;
        large = at::minimum(large, at::full_like(large, n - 1));
        return out + at::where(small, rel, large);
    }

    // 0 where `allowed` [B, q, k], the dtype's lowest elsewhere (transformers' additive
    // mask: a row with no allowed key gets uniform weights, not NaN).
    static at::Tensor key_mask(const at::Tensor& allowed, const at::Tensor& like) {
        const auto dtype = at::promote_types(like.scalar_type(), at::kFloat);
        return at::zeros(allowed.sizes(), like.options().dtype(dtype))
            .masked_fill_(allowed.logical_not(), std::numeric_limits<float>::lowest());
    }

    // T5LayerNorm: x * rsqrt(mean(x^2) + eps) in fp32, times the weight (Llama's RMSNorm
    // maths; the fused operator when the host has it).
    at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const { return fthost::ops::rms_norm(x, w, eps_); }

    fthost::LinearSite& linear(const std::string& name, int64_t in, int64_t out, double std) {
        auto& site = register_linear(name, in, out, false, at::TensorOptions().dtype(at::kFloat));
        at::NoGradGuard ng;
        site.weight.normal_(0, std);
        return site;
    }
    at::Tensor param(const std::string& name, at::IntArrayRef shape, double std) {
        return register_parameter(name, at::empty(shape, at::kFloat).normal_(0, std));
    }
    at::Tensor ones(const std::string& name) { return register_parameter(name, at::ones({d_model_}, at::kFloat)); }

    int64_t vocab_, d_model_, d_kv_, heads_, buckets_, max_distance_;
    double eps_;
    bool tied_, scale_, gated_ = true;
    Act act_ = Act::gelu_new;
    int64_t start_;
    at::Tensor shared_, encoder_norm_, decoder_norm_, lm_head_;
    std::vector<Block> encoder_, decoder_;
};

}  // namespace

FTHOST_MODEL(t5, T5, "t5", "0.1.0", "T5 encoder-decoder (v1.0, v1.1, FLAN-T5): relative position bias, T5 layer norm",
             kOptions);
FTHOST_PLUGINS(t5)
