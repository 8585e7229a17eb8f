// decoder — a Llama-family decoder: RMSNorm, rotary position embeddings (optionally with
// Llama 3's frequency scaling), SwiGLU MLP, grouped-query attention through
// scaled_dot_product_attention, optional biases (q/k/v as Qwen2, o_proj too as Llama's
// attention_bias, the MLP's as mlp_bias), optional per-head q/k RMSNorm (Qwen3), an
// explicit head width, a sliding window on every layer (Mistral) or on some (Gemma 2), and
// Gemma 2's pieces: (1 + w) norms, scaled embeddings, GeGLU, the norms around attention
// and MLP, query_pre_attn_scalar and soft-capped attention scores and logits; Gemma 3's
// q/k norms and its sliding layers' own rotary base; Mixtral's and Qwen3-MoE's mixtures of
// experts (top-k routing, experts as linear sites, the load-balancing loss); Phi-3's fused
// qkv_proj and gate_up_proj. Parameter names are Hugging Face's
// LlamaForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM / Phi3ForCausalLM names, every attention and MLP
// projection is a linear site that param plugins can adapt, and it reads those
// architectures' config.json (options_from_hf_config, hf_config.cpp).
#include "hf_config.hpp"

#include <ATen/autocast_mode.h>
#include <fthost/activation_checkpoint.hpp>
#include <fthost/padded_vocab.hpp>
#include <fthost/torch.hpp>

#include <cmath>
#include <limits>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("vocab_size", FT_OPT_INT, "32000", "vocabulary size (the host sets its tokenizer's size unless given)"),
    option("hidden_size", FT_OPT_INT, "256", "model width"),
    option("intermediate_size", FT_OPT_INT, "688", "SwiGLU MLP width"),
    option("num_hidden_layers", FT_OPT_INT, "4", "decoder layers"),
    option("num_attention_heads", FT_OPT_INT, "4", "query heads"),
    option("num_key_value_heads", FT_OPT_INT, "0", "key/value heads for grouped-query attention (0 = num_attention_heads)"),
    option("rope_theta", FT_OPT_FLOAT, "10000.0", "rotary embedding base"),
    option("rms_norm_eps", FT_OPT_FLOAT, "1e-6", "RMSNorm epsilon"),
    option("tie_word_embeddings", FT_OPT_BOOL, "false", "the LM head reuses the input embedding"),
    option("initializer_range", FT_OPT_FLOAT, "0.02", "std of the normal initialisation"),
    option("head_dim", FT_OPT_INT, "0", "width of one attention head (0 = hidden_size / num_attention_heads)"),
    option("attention_bias", FT_OPT_BOOL, "false", "biases on the q, k and v projections (Qwen2)"),
    option("o_proj_bias", FT_OPT_BOOL, "false", "a bias on the attention output projection (Llama's attention_bias)"),
    option("mlp_bias", FT_OPT_BOOL, "false", "biases on gate_proj, up_proj and down_proj"),
    option("qk_norm", FT_OPT_BOOL, "false", "RMSNorm over each head's queries and keys before rotary (Qwen3)"),
    option("sliding_window", FT_OPT_INT, "0", "each token attends to the last this many tokens, itself included (Mistral); 0 = all"),
    option("layer_types", FT_OPT_STRING_LIST, "[]",
           "per layer: sliding_attention (the window applies) or full_attention; [] = the window applies to every layer"),
    option("fused_qkv", FT_OPT_BOOL, "false",
           "one qkv_proj site computes queries, keys and values, concatenated in that order (Phi-3)"),
    option("fused_gate_up", FT_OPT_BOOL, "false", "one gate_up_proj site computes the gate, then the up projection (Phi-3)"),
    option("num_experts", FT_OPT_INT, "0", "experts per MLP: 0 = one gated MLP; else a mixture of experts (Mixtral, Qwen3-MoE)"),
    option("num_experts_per_tok", FT_OPT_INT, "2", "experts each token is routed to: the top k of the router's softmax"),
    option("moe_intermediate_size", FT_OPT_INT, "0", "an expert's MLP width (0 = intermediate_size)"),
    option("norm_topk_prob", FT_OPT_BOOL, "true",
           "the top-k routing weights renormalised to sum to 1 (Mixtral always; Qwen3-MoE's norm_topk_prob)"),
    option("expert_names", FT_OPT_STRING, "\"mixtral\"",
           "expert parameter names: mixtral (block_sparse_moe.experts.N.w1 / w3 / w2, block_sparse_moe.gate) or "
           "qwen3_moe (mlp.experts.N.gate_proj / up_proj / down_proj, mlp.gate)"),
    option("router_aux_loss_coef", FT_OPT_FLOAT, "0.0",
           "weight of the routers' load-balancing loss added to the training loss (transformers' aux_loss with "
           "output_router_logits); 0 = off"),
    option("hidden_act", FT_OPT_STRING, "\"silu\"", "the gated MLP's activation: silu (SwiGLU) or gelu_tanh (Gemma's GeGLU)"),
    option("norm_plus_one", FT_OPT_BOOL, "false", "RMSNorm scales by 1 + weight, in float32 (Gemma)"),
    option("embedding_scale", FT_OPT_BOOL, "false", "embeddings multiplied by sqrt(hidden_size) (Gemma)"),
    option("sandwich_norms", FT_OPT_BOOL, "false",
           "norms after attention and around the MLP: post_attention, pre_ and post_feedforward_layernorm (Gemma 2)"),
    option("query_pre_attn_scalar", FT_OPT_FLOAT, "0.0", "attention scores scaled by its -1/2 power (0 = head_dim)"),
    option("attn_logit_softcapping", FT_OPT_FLOAT, "0.0", "scores become c tanh(s / c) before the mask (0 = off)"),
    option("final_logit_softcapping", FT_OPT_FLOAT, "0.0", "logits become c tanh(z / c) (0 = off)"),
    option("rope_scaling_type", FT_OPT_STRING, "\"default\"",
           "rotary frequency scaling: default, linear (frequencies divided by rope_scaling_factor) or llama3"),
    option("rope_scaling_factor", FT_OPT_FLOAT, "8.0",
           "linear: every frequency is divided by it; llama3: the long-wavelength ones are"),
    option("sliding_rope_theta", FT_OPT_FLOAT, "0.0",
           "rotary base of the sliding-window layers, unscaled (Gemma 3's local base); 0 = rope_theta with its scaling"),
    option("rope_scaling_low_freq_factor", FT_OPT_FLOAT, "1.0", "llama3: low_freq_factor"),
    option("rope_scaling_high_freq_factor", FT_OPT_FLOAT, "4.0", "llama3: high_freq_factor"),
    option("rope_scaling_original_max_position_embeddings", FT_OPT_INT, "8192",
           "llama3: the context length the frequencies were trained for"),
};

class Decoder : public fthost::ModelBase {
public:
    Decoder(const fthost::Host& host, const fthost::Config& cfg)
        : vocab_(cfg.get_int("vocab_size")),
          hidden_(cfg.get_int("hidden_size")),
          heads_(cfg.get_int("num_attention_heads")),
          kv_heads_(cfg.get_int("num_key_value_heads") > 0 ? cfg.get_int("num_key_value_heads") : heads_),
          theta_(cfg.get_float("rope_theta")),
          eps_(cfg.get_float("rms_norm_eps")),
          tied_(cfg.get_bool("tie_word_embeddings")),
          window_(cfg.get_int("sliding_window")),
          gelu_(cfg.get_string("hidden_act") == "gelu_tanh"),
          norm_plus_one_(cfg.get_bool("norm_plus_one")),
          embedding_scale_(cfg.get_bool("embedding_scale")),
          sandwich_(cfg.get_bool("sandwich_norms")),
          attn_softcap_(cfg.get_float("attn_logit_softcapping")),
          final_softcap_(cfg.get_float("final_logit_softcapping")),
          experts_(cfg.get_int("num_experts")),
          top_k_(cfg.get_int("num_experts_per_tok")),
          norm_topk_(cfg.get_bool("norm_topk_prob")),
          aux_coef_(cfg.get_float("router_aux_loss_coef")) {
        validate(cfg);
        const int64_t layers = cfg.get_int("num_hidden_layers"), inter = cfg.get_int("intermediate_size");
        head_dim_ = cfg.get_int("head_dim") > 0 ? cfg.get_int("head_dim") : hidden_ / heads_;
        const double scalar = cfg.get_float("query_pre_attn_scalar");
        if (scalar > 0) scale_ = 1.0 / std::sqrt(scalar);
        const auto types = cfg.get_string_list("layer_types");
        const bool qkv_bias = cfg.get_bool("attention_bias"), o_bias = cfg.get_bool("o_proj_bias");
        const bool mlp_bias = cfg.get_bool("mlp_bias"), qk_norm = cfg.get_bool("qk_norm");
        inv_freq_ = inv_freq_dev_ = rotary_inverse_frequencies(theta_, &cfg);
        if (cfg.get_float("sliding_rope_theta") > 0)
            local_inv_freq_ = local_inv_freq_dev_ = rotary_inverse_frequencies(cfg.get_float("sliding_rope_theta"), nullptr);
        const double std = cfg.get_float("initializer_range");
        const auto opts = parameter_options(host);
        embed_ = register_parameter("model.embed_tokens.weight", at::empty({vocab_, hidden_}, opts).normal_(0, std));
        // A norm's weight as stored: 1 (w), or 0 when the norm scales by 1 + w.
        const auto norm = [&](const std::string& name, int64_t n) {
            return register_parameter(name, norm_plus_one_ ? at::zeros({n}, opts) : at::ones({n}, opts));
        };
        for (int64_t i = 0; i < layers; ++i) {
            const std::string p = "model.layers." + std::to_string(i) + ".";
            Layer l;
            l.sliding = types.empty() || types[static_cast<size_t>(i)] == "sliding_attention";
            l.window = l.sliding ? window_ : 0;
            l.input_norm = norm(p + "input_layernorm.weight", hidden_);
            if (cfg.get_bool("fused_qkv")) {
                l.qkv = &linear(p + "self_attn.qkv_proj", hidden_, (heads_ + 2 * kv_heads_) * head_dim_, std, opts, qkv_bias);
            } else {
                l.q = &linear(p + "self_attn.q_proj", hidden_, heads_ * head_dim_, std, opts, qkv_bias);
                l.k = &linear(p + "self_attn.k_proj", hidden_, kv_heads_ * head_dim_, std, opts, qkv_bias);
                l.v = &linear(p + "self_attn.v_proj", hidden_, kv_heads_ * head_dim_, std, opts, qkv_bias);
            }
            l.o = &linear(p + "self_attn.o_proj", heads_ * head_dim_, hidden_, std, opts, o_bias);
            if (qk_norm) {
                l.q_norm = norm(p + "self_attn.q_norm.weight", head_dim_);
                l.k_norm = norm(p + "self_attn.k_norm.weight", head_dim_);
            }
            l.post_norm = norm(p + "post_attention_layernorm.weight", hidden_);
            if (sandwich_) {
                l.pre_ff_norm = norm(p + "pre_feedforward_layernorm.weight", hidden_);
                l.post_ff_norm = norm(p + "post_feedforward_layernorm.weight", hidden_);
            }
            if (experts_ > 0) {
                add_experts(l, p, cfg, std, opts);
            } else if (cfg.get_bool("fused_gate_up")) {
                l.gate_up = &linear(p + "mlp.gate_up_proj", hidden_, 2 * inter, std, opts, mlp_bias);
            } else {
                l.gate = &linear(p + "mlp.gate_proj", hidden_, inter, std, opts, mlp_bias);
                l.up = &linear(p + "mlp.up_proj", hidden_, inter, std, opts, mlp_bias);
            }
            if (experts_ == 0) l.down = &linear(p + "mlp.down_proj", inter, hidden_, std, opts, mlp_bias);
            layers_.push_back(l);
        }
        norm_ = norm("model.norm.weight", hidden_);
        if (!tied_) lm_head_ = register_parameter("lm_head.weight", at::empty({vocab_, hidden_}, opts).normal_(0, std));
    }

    static void validate(const fthost::Config& cfg) {
        const int64_t hidden = cfg.get_int("hidden_size"), heads = cfg.get_int("num_attention_heads");
        const int64_t kv = cfg.get_int("num_key_value_heads");
        if (cfg.get_int("vocab_size") < 1) cfg.fail("vocab_size", "must be positive");
        for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers"})
            if (cfg.get_int(k) < 1) cfg.fail(k, "must be positive");
        const int64_t head_dim = cfg.get_int("head_dim");
        if (head_dim < 0 || (head_dim > 0 && head_dim % 2 != 0)) cfg.fail("head_dim", "must be 0 (derived) or even and positive");
        if (heads < 1 || (head_dim == 0 && hidden % heads != 0))
            cfg.fail("num_attention_heads", "must be positive and divide hidden_size (or give head_dim)");
        if (kv < 0 || (kv > 0 && heads % kv != 0)) cfg.fail("num_key_value_heads", "must divide num_attention_heads");
        if (head_dim == 0 && (hidden / heads) % 2 != 0)
            cfg.fail("num_attention_heads", "hidden_size / num_attention_heads must be even (rotary)");
        if (cfg.get_float("rms_norm_eps") <= 0) cfg.fail("rms_norm_eps", "must be positive");
        if (cfg.get_int("sliding_window") < 0) cfg.fail("sliding_window", "must be 0 (off) or positive");
        const auto types = cfg.get_string_list("layer_types");
        if (!types.empty() && static_cast<int64_t>(types.size()) != cfg.get_int("num_hidden_layers"))
            cfg.fail("layer_types", "must name one type per layer (" + std::to_string(cfg.get_int("num_hidden_layers")) + ")");
        for (const auto& t : types)
            if (t != "sliding_attention" && t != "full_attention")
                cfg.fail("layer_types", "'" + t + "' is not sliding_attention or full_attention");
        if (cfg.get_int("num_experts") < 0) cfg.fail("num_experts", "must be 0 (a dense MLP) or positive");
        if (cfg.get_int("num_experts") > 0) {
            if (cfg.get_int("num_experts_per_tok") < 1 || cfg.get_int("num_experts_per_tok") > cfg.get_int("num_experts"))
                cfg.fail("num_experts_per_tok", "must be between 1 and num_experts");
            if (cfg.get_int("moe_intermediate_size") < 0) cfg.fail("moe_intermediate_size", "must be 0 or positive");
            const std::string names = cfg.get_string("expert_names");
            if (names != "mixtral" && names != "qwen3_moe") cfg.fail("expert_names", "must be mixtral or qwen3_moe");
            if (cfg.get_bool("fused_gate_up")) cfg.fail("fused_gate_up", "experts have their own gate and up projections");
            if (cfg.get_bool("mlp_bias")) cfg.fail("mlp_bias", "experts have no biases");
        }
        if (cfg.get_float("router_aux_loss_coef") < 0) cfg.fail("router_aux_loss_coef", "must be 0 (off) or positive");
        const std::string act = cfg.get_string("hidden_act");
        if (act != "silu" && act != "gelu_tanh") cfg.fail("hidden_act", "must be silu or gelu_tanh");
        for (const char* k : {"query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping"})
            if (cfg.get_float(k) < 0) cfg.fail(k, "must be 0 (off) or positive");
        const std::string rope = cfg.get_string("rope_scaling_type");
        if (rope != "default" && rope != "linear" && rope != "llama3")
            cfg.fail("rope_scaling_type", "must be default, linear or llama3");
        if (rope != "default" && cfg.get_float("rope_scaling_factor") <= 0) cfg.fail("rope_scaling_factor", "must be positive");
        if (cfg.get_float("sliding_rope_theta") < 0) cfg.fail("sliding_rope_theta", "must be 0 (rope_theta) or positive");
        if (rope == "llama3") {
            if (cfg.get_float("rope_scaling_high_freq_factor") <= cfg.get_float("rope_scaling_low_freq_factor"))
                cfg.fail("rope_scaling_high_freq_factor", "must exceed rope_scaling_low_freq_factor");
            if (cfg.get_int("rope_scaling_original_max_position_embeddings") < 1)
                cfg.fail("rope_scaling_original_max_position_embeddings", "must be positive");
        }
    }

    // The routers' load-balancing loss, weighted, goes out as "auxiliary_loss" (the host
    // adds it to the training loss) when there is one to compute.
    at::Tensor forward(const fthost::BatchView& b, const fthost::ModelOutputs& outputs) {
        const bool aux = experts_ > 0 && aux_coef_ > 0 && training() && at::GradMode::is_enabled();
        if (aux && activation_checkpointing())
            throw fthost::Error("router_aux_loss_coef needs activation_checkpointing = false: a recomputed block's "
                                "router would count its tokens twice", FT_ERR_CONFIG);
        if (!aux) return forward(b);
        routing_ = RoutingStats{b.sequence_ids.ge(0).reshape({-1})};
        struct Reset {
            std::optional<RoutingStats>& r;
            ~Reset() { r.reset(); }  // also when the forward throws: no later forward adds to it
        } reset{routing_};
        at::Tensor hidden = forward(b);
        outputs.add("auxiliary_loss", routing_->load_balancing_loss(experts_) * aux_coef_);
        return hidden;
    }

    at::Tensor forward(const fthost::BatchView& b) {
        const auto& ids = b.input_ids;
        const int64_t T = ids.size(1);
        at::Tensor x = embed(ids);
        const Rotary rope = rotary(b.position_ids, x.scalar_type());
        // One document per row with no padding, shorter than any sliding window: plain causal
        // attention (the flash path). Otherwise a mask keeps every token inside its own
        // document (and its window: a document's tokens sit in consecutive slots).
        const at::Tensor& seq = b.sequence_ids;
        const bool plain = (seq.eq(seq.select(1, 0).unsqueeze(1)) & seq.ge(0)).all().item<bool>();  // one sync
        Masks masks;
        // Soft-capped scores are computed here, not by SDPA: they need an explicit mask.
        if (!plain || attn_softcap_ > 0) masks.full = document_mask(seq, x, 0);
        if (window_ > 0 && T > window_) masks.window = document_mask(seq, x, window_);
        return layers(x, rope, masks, nullptr);
    }

    // Incremental decoding: the new tokens attend to the cached ones of their row.
    at::Tensor forward_cached(const fthost::BatchView& b, fthost::KvCache& cache) {
        at::Tensor x = embed(b.input_ids);
        const Rotary rope = rotary(b.position_ids, x.scalar_type());
        Masks masks;
        masks.full = cache.extend(b.sequence_ids.ge(0));
        if (window_ > 0) masks.window = cache.sliding_window(*masks.full, window_);
        return layers(x, rope, masks, &cache);
    }

    // Over the vocabulary padded to a multiple of 64 (<fthost/padded_vocab.hpp>); the
    // logits, the saved weight and its gradient keep the real size.
    at::Tensor lm_head(const at::Tensor& hidden) {
        at::Tensor logits = head_.logits(hidden, tied_ ? embed_ : lm_head_);
        return final_softcap_ > 0 ? at::tanh(logits / final_softcap_) * final_softcap_ : logits;
    }
    int64_t vocab_size() const { return vocab_; }

    static constexpr bool supports_activation_checkpointing = true;
    // Every product goes through ops::linear / ops::rms_norm / ops::embedding and the
    // padded head, which cast where a stored bf16 weight meets float32 activations.
    static constexpr bool keeps_stored_dtypes = true;
    // forward_cached is device work only (rotary from the batch's positions, the mask and
    // slots from KvCache's device cursor): its decode steps may be replayed from a CUDA graph.
    static constexpr bool graph_safe_decode = true;
    static constexpr const char* hf_architectures[] = {"LlamaForCausalLM",   "Qwen2ForCausalLM",  "Qwen3ForCausalLM",
                                                       "MistralForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
                                                       "Phi3ForCausalLM",    "MixtralForCausalLM", "Qwen3MoeForCausalLM",
                                                       nullptr};
    static std::string options_from_hf_config(const std::string& config_json) {
        return decoder_options_from_hf_config(config_json);
    }

private:
    struct Expert {
        fthost::LinearSite *gate = nullptr, *up = nullptr, *down = nullptr;
    };
    struct Layer {
        at::Tensor input_norm, post_norm;
        at::Tensor router;                 // [experts, hidden] (num_experts > 0)
        std::vector<Expert> experts;       // empty: a dense MLP
        at::Tensor q_norm, k_norm;         // [head_dim] (qk_norm), else undefined
        at::Tensor pre_ff_norm, post_ff_norm;  // sandwich_norms, else undefined
        bool sliding = false;              // layer_types calls it sliding_attention (or names none)
        int64_t window = 0;                // this layer's sliding window (0: full attention)
        fthost::LinearSite *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
        fthost::LinearSite* qkv = nullptr;  // fused_qkv: q, k and v in one site
        fthost::LinearSite *gate = nullptr, *up = nullptr, *down = nullptr;
        fthost::LinearSite* gate_up = nullptr;  // fused_gate_up: gate and up in one site
    };

    // The decoder layers and the final norm. No mask = plain causal attention; with a
    // cache, each layer's keys and values are appended to it and attention spans them.
    // The attention masks of a forward: for full-attention layers and for sliding ones.
    // Unset: plain causal attention (SDPA's is_causal).
    struct Masks {
        std::optional<at::Tensor> full, window;
    };

    // cos/sin [B, 1, T, head_dim] of a forward's positions; the local pair (Gemma 3's
    // sliding layers, their own base) only with sliding_rope_theta.
    struct Rotary {
        at::Tensor cos, sin, local_cos, local_sin;
    };

    at::Tensor layers(at::Tensor x, const Rotary& rope, const Masks& masks, fthost::KvCache* cache) {
        for (size_t i = 0; i < layers_.size(); ++i) {
            const std::optional<at::Tensor>& mask = layers_[i].window > 0 && masks.window ? masks.window : masks.full;
            const bool local = layers_[i].sliding && rope.local_cos.defined();
            const at::Tensor& cos = local ? rope.local_cos : rope.cos;
            const at::Tensor& sin = local ? rope.local_sin : rope.sin;
            if (activation_checkpointing() && !cache)
                x = fthost::checkpointed(&checkpointed_layer, this, static_cast<int64_t>(i), x, cos, sin,
                                         mask ? *mask : at::Tensor());
            else
                x = layer(i, x, cos, sin, mask, cache);
        }
        return rms_norm(x, norm_);
    }

    at::Tensor embed(const at::Tensor& ids) const {
        at::Tensor x = fthost::ops::embedding(embed_, ids);  // float32 whatever the table's dtype
        // As Gemma (computing in float32): the scale in the activations' dtype.
        return embedding_scale_ ? x * at::scalar_tensor(std::sqrt(static_cast<double>(hidden_)), x.options()) : x;
    }

    // Additive [B, 1, T, T]: each token sees its own document's earlier tokens (and only
    // the last `window` of them when window > 0: i - j < window).
    static at::Tensor document_mask(const at::Tensor& seq, const at::Tensor& x, int64_t window) {
        const int64_t T = seq.size(1);
        at::Tensor same = seq.unsqueeze(2).eq(seq.unsqueeze(1));
        at::Tensor causal = at::ones({T, T}, seq.options().dtype(at::kBool)).tril();
        if (window > 0) causal = causal.triu(-(window - 1));
        return additive_mask((same & causal).unsqueeze(1), x);
    }

    at::Tensor layer(size_t i, at::Tensor x, const at::Tensor& cos, const at::Tensor& sin,
                     const std::optional<at::Tensor>& mask, fthost::KvCache* cache) {
        const int64_t B = x.size(0), T = x.size(1);
        const Layer& l = layers_[i];
        at::Tensor h = rms_norm(x, l.input_norm);
        auto [q, k, v] = project_qkv(l, h);
        q = q.reshape({B, T, heads_, head_dim_});  // a view, fused or not
        k = k.reshape({B, T, kv_heads_, head_dim_});
        if (l.q_norm.defined()) q = rms_norm(q, l.q_norm), k = rms_norm(k, l.k_norm);  // per head, before rotary
        q = q.transpose(1, 2);
        k = k.transpose(1, 2);
        v = v.reshape({B, T, kv_heads_, head_dim_}).transpose(1, 2);
        q = q * cos + rotate_half(q) * sin;
        k = k * cos + rotate_half(k) * sin;
        if (cache) std::tie(k, v) = cache->append(i, k, v);
        const at::Tensor a = attention(q, k, v, mask);
        const at::Tensor attn = (*l.o)(a.transpose(1, 2).reshape({B, T, heads_ * head_dim_}));
        if (!sandwich_) {
            x = x + attn;
            return x + mlp(l, rms_norm(x, l.post_norm), cache != nullptr);
        }
        x = x + rms_norm(attn, l.post_norm);
        return x + rms_norm(mlp(l, rms_norm(x, l.pre_ff_norm), cache != nullptr), l.post_ff_norm);
    }

    // Queries, keys and values [B, T, heads x head_dim] (keys and values kv_heads wide):
    // three sites, or one fused site's output cut in that order.
    std::tuple<at::Tensor, at::Tensor, at::Tensor> project_qkv(const Layer& l, const at::Tensor& h) const {
        if (!l.qkv) return {(*l.q)(h), (*l.k)(h), (*l.v)(h)};
        const at::Tensor qkv = (*l.qkv)(h);
        const int64_t nq = heads_ * head_dim_, nkv = kv_heads_ * head_dim_;
        return {qkv.narrow(-1, 0, nq), qkv.narrow(-1, nq, nkv), qkv.narrow(-1, nq + nkv, nkv)};
    }

    // every_expert: a mixture of experts runs each expert on every token, weighted by zero
    // where it is not routed — no host synchronisation, as a replayed decode step needs.
    at::Tensor mlp(const Layer& l, const at::Tensor& h, bool every_expert = false) {
        if (!l.experts.empty()) return mixture(l, h, every_expert);
        at::Tensor g, u;
        if (l.gate_up) {
            const at::Tensor gu = (*l.gate_up)(h);
            const int64_t inter = gu.size(-1) / 2;
            g = gu.narrow(-1, 0, inter), u = gu.narrow(-1, inter, inter);
        } else {
            g = (*l.gate)(h), u = (*l.up)(h);
        }
        return (*l.down)(activation(g) * u);
    }

    at::Tensor activation(const at::Tensor& g) const { return gelu_ ? at::gelu(g, "tanh") : at::silu(g); }

    // One expert's gated MLP.
    at::Tensor expert(const Expert& e, const at::Tensor& x) const { return (*e.down)(activation((*e.gate)(x)) * (*e.up)(x)); }

    // transformers' sparse MoE block: router logits, softmax in float32, the top k (their
    // weights renormalised when norm_topk_prob), each token's experts weighted and summed.
    at::Tensor mixture(const Layer& l, const at::Tensor& h, bool every_expert) {
        const at::Tensor x = h.reshape({-1, h.size(-1)});
        const at::Tensor logits = fthost::ops::linear(x, l.router);
        const at::Tensor probs = at::softmax(logits, -1, at::kFloat);
        auto [weights, chosen] = probs.topk(top_k_, -1);
        if (norm_topk_) weights = weights / weights.sum(-1, true);
        weights = weights.to(x.scalar_type());
        if (routing_) routing_->add(probs, chosen);
        at::Tensor out = at::zeros_like(x);
        if (every_expert) {
            const at::Tensor dense = at::zeros({x.size(0), experts_}, weights.options()).scatter_(1, chosen, weights);
            for (int64_t e = 0; e < experts_; ++e)
                out = out + expert(l.experts[static_cast<size_t>(e)], x) * dense.select(1, e).unsqueeze(1);
            return out.view(h.sizes());
        }
        for (int64_t e = 0; e < experts_; ++e) {
            const at::Tensor hits = at::nonzero(chosen.eq(e));  // [M, 2]: token, slot
            if (hits.size(0) == 0) continue;
            const at::Tensor tokens = hits.select(1, 0), slots = hits.select(1, 1);
            const at::Tensor w = weights.index({tokens, slots}).unsqueeze(1);
            out = out.index_add(0, tokens, expert(l.experts[static_cast<size_t>(e)], x.index_select(0, tokens)) * w);
        }
        return out.view(h.sizes());
    }

    // The experts' sites and the router of one layer, under the checkpoint's names.
    void add_experts(Layer& l, const std::string& p, const fthost::Config& cfg, double std, const at::TensorOptions& opts) {
        const int64_t inter = cfg.get_int("moe_intermediate_size") > 0 ? cfg.get_int("moe_intermediate_size")
                                                                       : cfg.get_int("intermediate_size");
        const bool mixtral = cfg.get_string("expert_names") == "mixtral";
        const std::string block = p + (mixtral ? "block_sparse_moe." : "mlp.");
        l.router = register_parameter(block + "gate.weight", at::empty({experts_, hidden_}, opts).normal_(0, std));
        for (int64_t e = 0; e < experts_; ++e) {
            const std::string n = block + "experts." + std::to_string(e) + ".";
            Expert x;
            x.gate = &linear(n + (mixtral ? "w1" : "gate_proj"), hidden_, inter, std, opts);
            x.up = &linear(n + (mixtral ? "w3" : "up_proj"), hidden_, inter, std, opts);
            x.down = &linear(n + (mixtral ? "w2" : "down_proj"), inter, hidden_, std, opts);
            l.experts.push_back(x);
        }
    }

    // What the load-balancing loss needs from every layer's router over one forward
    // (transformers' load_balancing_loss_func): top-k assignments and router
    // probabilities summed per expert over the real (not padding) tokens.
    struct RoutingStats {
        at::Tensor valid;  // float [N]: 1 for a real token
        at::Tensor assigned, probability;  // float [E]
        at::Tensor rows;                   // float scalar
        explicit RoutingStats(const at::Tensor& is_real) : valid(is_real.to(at::kFloat)) {}
        void add(const at::Tensor& probs, const at::Tensor& chosen) {
            const int64_t k = chosen.size(1);
            const at::Tensor counts = at::zeros({probs.size(1)}, probs.options())
                                          .scatter_add_(0, chosen.reshape({-1}), valid.repeat_interleave(k));
            const at::Tensor p = (probs * valid.unsqueeze(1)).sum(0);
            assigned = assigned.defined() ? assigned + counts : counts;
            probability = probability.defined() ? probability + p : p;
            rows = rows.defined() ? rows + valid.sum() : valid.sum();
        }
        // E * sum_e (tokens routed to e / rows) * (mean router probability of e)
        at::Tensor load_balancing_loss(int64_t experts) const {
            return (assigned / rows * (probability / rows)).sum() * static_cast<double>(experts);
        }
    };

    // q [B, H, T, D], k and v [B, KV, S, D]; mask additive or boolean [B, 1, T, S], or
    // unset for plain causal attention. Soft-capped scores (Gemma 2) are computed here as
    // transformers' eager attention does; otherwise SDPA.
    at::Tensor attention(const at::Tensor& q, at::Tensor k, at::Tensor v, const std::optional<at::Tensor>& mask) const {
        if (attn_softcap_ <= 0)
            return at::scaled_dot_product_attention(q, k, v, mask, 0.0, /*is_causal=*/!mask.has_value(), scale_,
                                                    /*enable_gqa=*/kv_heads_ != heads_);
        const double scale = scale_ ? *scale_ : 1.0 / std::sqrt(static_cast<double>(head_dim_));
        if (kv_heads_ != heads_) k = k.repeat_interleave(heads_ / kv_heads_, 1), v = v.repeat_interleave(heads_ / kv_heads_, 1);
        at::Tensor s = at::matmul(q, k.transpose(2, 3)) * scale;
        s = at::tanh(s / attn_softcap_) * attn_softcap_;
        const at::Tensor& m = *mask;  // set whenever scores are soft-capped
        s = m.scalar_type() == at::kBool ? s.masked_fill(m.logical_not(), -std::numeric_limits<double>::infinity())
                                         : s + m;
        return at::matmul(at::softmax(s, -1, at::kFloat).to(q.scalar_type()), v);
    }

    // One layer as activation checkpointing calls it: {x, cos, sin, mask or undefined}.
    static at::Tensor checkpointed_layer(void* self, int64_t i, const std::vector<at::Tensor>& in) {
        const std::optional<at::Tensor> mask = in[3].defined() ? std::optional<at::Tensor>(in[3]) : std::nullopt;
        return static_cast<Decoder*>(self)->layer(static_cast<size_t>(i), in[0], in[1], in[2], mask, nullptr);
    }

    fthost::LinearSite& linear(const std::string& name, int64_t in, int64_t out, double std, const at::TensorOptions& o,
                               bool bias = false) {
        auto& site = register_linear(name, in, out, bias, o);
        at::NoGradGuard ng;
        site.weight.normal_(0, std);
        return site;
    }

    // Hugging Face's rotary inverse frequencies, 1 / theta^(2i / head_dim) in fp32, with
    // the configured scaling (none when `scaling` is null): linear divides every frequency
    // by factor; llama3 divides wavelengths longer than original_ctx / low_freq_factor by
    // it, keeps those shorter than original_ctx / high_freq_factor, and interpolates
    // smoothly between.
    at::Tensor rotary_inverse_frequencies(double theta, const fthost::Config* scaling) const {
        at::Tensor inv = 1.0 / at::pow(theta, at::arange(0, head_dim_, 2, at::kLong).to(at::kFloat) /
                                                  static_cast<double>(head_dim_));
        const std::string type = scaling ? scaling->get_string("rope_scaling_type") : "default";
        if (type == "linear") return inv / scaling->get_float("rope_scaling_factor");
        if (type != "llama3") return inv;
        const fthost::Config& cfg = *scaling;
        const double factor = cfg.get_float("rope_scaling_factor"), low = cfg.get_float("rope_scaling_low_freq_factor");
        const double high = cfg.get_float("rope_scaling_high_freq_factor");
        const double ctx = static_cast<double>(cfg.get_int("rope_scaling_original_max_position_embeddings"));
        const at::Tensor wavelen = 2 * M_PI / inv;
        at::Tensor scaled = at::where(wavelen > ctx / low, inv / factor, inv);
        const at::Tensor smooth = (ctx / wavelen - low) / (high - low);
        const at::Tensor smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
        const at::Tensor medium = wavelen.ge(ctx / high) & wavelen.le(ctx / low);
        return at::where(medium, smoothed, scaled);
    }

    // Gemma's norm scales by 1 + w in float32, then returns to x's dtype.
    at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w) const {
        if (!norm_plus_one_) return fthost::ops::rms_norm(x, w, eps_);
        return fthost::ops::rms_norm(x.to(at::kFloat), 1.0 + w.to(at::kFloat), eps_).to(x.scalar_type());
    }

    // cos/sin for the given positions (rotate_half convention), and the local pair.
    Rotary rotary(const at::Tensor& pos, at::ScalarType dtype) const {
        Rotary r;
        std::tie(r.cos, r.sin) = rotary(pos, dtype, inv_freq_, inv_freq_dev_);
        if (local_inv_freq_.defined()) std::tie(r.local_cos, r.local_sin) = rotary(pos, dtype, local_inv_freq_, local_inv_freq_dev_);
        return r;
    }
    static std::pair<at::Tensor, at::Tensor> rotary(const at::Tensor& pos, at::ScalarType dtype, const at::Tensor& inv_freq,
                                                    at::Tensor& on_device) {
        const auto ft = at::promote_types(dtype, at::kFloat);
        if (on_device.device() != pos.device()) on_device = inv_freq.to(pos.device());  // once per device
        at::Tensor freqs = pos.to(ft).unsqueeze(-1) * on_device.to(ft);
        at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
        return {emb.cos().to(dtype), emb.sin().to(dtype)};
    }

    // One additive mask per forward ([B, 1, T, T]: 0 where allowed, -inf elsewhere) in the
    // dtype attention runs in (autocast's when on), shared by every layer. Given a bool
    // mask, each layer's attention would convert it again and keep its own copy for
    // backward: layers x B x T x T floats.
    static at::Tensor additive_mask(const at::Tensor& allowed, const at::Tensor& x) {
        const auto type = x.device().type();
        const auto dtype =
            at::autocast::is_autocast_enabled(type) ? at::autocast::get_autocast_dtype(type) : x.scalar_type();
        return at::zeros(allowed.sizes(), x.options().dtype(dtype))
            .masked_fill_(allowed.logical_not(), -std::numeric_limits<double>::infinity());
    }

    static at::Tensor rotate_half(const at::Tensor& x) {
        const int64_t h = x.size(-1) / 2;
        return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
    }

    int64_t vocab_, hidden_, heads_, kv_heads_, head_dim_ = 0;
    double theta_, eps_;
    bool tied_;
    int64_t window_;  // sliding window (0: off)
    bool gelu_, norm_plus_one_, embedding_scale_, sandwich_;
    double attn_softcap_, final_softcap_;
    int64_t experts_, top_k_;  // mixture of experts (0: dense MLPs)
    bool norm_topk_;
    double aux_coef_;
    std::optional<RoutingStats> routing_;  // set during a forward that reports the load-balancing loss
    std::optional<double> scale_;  // query_pre_attn_scalar^-1/2; unset: head_dim^-1/2 (SDPA's own)
    at::Tensor embed_, norm_, lm_head_;
    fthost::PaddedVocabHead head_;
    at::Tensor inv_freq_;                // [head_dim / 2] float32, on the CPU
    mutable at::Tensor inv_freq_dev_;    // the same on the device of the last forward
    at::Tensor local_inv_freq_;          // sliding layers' (sliding_rope_theta), else undefined
    mutable at::Tensor local_inv_freq_dev_;
    std::vector<Layer> layers_;
};

}  // namespace

FTHOST_MODEL(decoder, Decoder, "decoder", "0.2.0",
             "Llama-family decoder (Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE, Gemma 2 and 3, Phi-3: RMSNorm, "
             "RoPE, gated MLP or experts, GQA)",
             kOptions);
FTHOST_PLUGINS(decoder)
