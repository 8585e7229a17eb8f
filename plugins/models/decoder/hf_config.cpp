#include "hf_config.hpp"

#include <fthost/hf_config.hpp>

using nlohmann::json;
using fthost::hf::find;
using fthost::hf::unsupported;

// Mixtral's and Qwen3-MoE's experts: how many, the top k, their width and names, whether
// the top-k weights are renormalised, and the load-balancing loss's weight (transformers
// adds it only with output_router_logits).
static void moe_options(const json& c, const std::string& arch, json& o) {
    const bool mixtral = arch == "MixtralForCausalLM", qwen3 = arch == "Qwen3MoeForCausalLM";
    if (!mixtral && !qwen3) return;
    // transformers 5 writes num_local_experts for both; Qwen3-MoE's own name is num_experts.
    const char* count = mixtral || find(c, "num_local_experts") ? "num_local_experts" : "num_experts";
    for (const char* k : {count, "num_experts_per_tok"})
        if (const json* v = find(c, k); !v || !v->is_number_integer()) unsupported(k, "missing or not an integer");
    o["num_experts"] = c[count];
    o["num_experts_per_tok"] = c["num_experts_per_tok"];
    o["expert_names"] = mixtral ? "mixtral" : "qwen3_moe";
    o["norm_topk_prob"] = mixtral || (find(c, "norm_topk_prob") && c["norm_topk_prob"].get<bool>());
    if (qwen3) {
        if (const json* v = find(c, "moe_intermediate_size")) o["moe_intermediate_size"] = *v;
        if (const json* v = find(c, "decoder_sparse_step"); v && v->get<int64_t>() != 1)
            unsupported("decoder_sparse_step", "dense layers between sparse ones are not supported (1 is)");
        if (const json* v = find(c, "mlp_only_layers"); v && !v->empty())
            unsupported("mlp_only_layers", "dense layers among the sparse ones are not supported ([] is)");
    }
    if (const json* v = find(c, "router_jitter_noise"); v && v->get<double>() != 0)
        unsupported("router_jitter_noise", "jittered routing is not supported (0 is)");
    const json* logits = find(c, "output_router_logits");
    if (logits && logits->get<bool>())
        if (const json* v = find(c, "router_aux_loss_coef")) o["router_aux_loss_coef"] = v->get<double>();
}

std::string decoder_options_from_hf_config(const std::string& config_json) {
    const json c = fthost::hf::parse_config(config_json);
    std::string arch;
    if (const json* a = find(c, "architectures"); a && a->is_array() && !a->empty()) arch = (*a)[0].get<std::string>();
    json o = json::object();
    for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"}) {
        const json* v = find(c, k);
        if (!v || !v->is_number_integer()) unsupported(k, "missing or not an integer");
        o[k] = *v;
    }
    o["num_key_value_heads"] = find(c, "num_key_value_heads") ? c["num_key_value_heads"] : o["num_attention_heads"];
    if (const json* v = find(c, "head_dim")) o["head_dim"] = *v;
    if (const json* v = find(c, "rms_norm_eps")) o["rms_norm_eps"] = v->get<double>();
    if (const json* v = find(c, "initializer_range")) o["initializer_range"] = v->get<double>();
    o["tie_word_embeddings"] = find(c, "tie_word_embeddings") ? c["tie_word_embeddings"].get<bool>() : false;

    const bool gemma2 = arch == "Gemma2ForCausalLM", gemma3 = arch == "Gemma3ForCausalLM", gemma = gemma2 || gemma3;
    if (gemma) {
        // Gemma 2 and 3: (1 + w) norms, sqrt(hidden)-scaled embeddings, GeGLU, norms around
        // attention and MLP, soft-capped attention scores and logits where set (Gemma 2);
        // Gemma 3 adds per-head q/k norms.
        const json* act = find(c, "hidden_activation");
        if (!act) act = find(c, "hidden_act");
        if (act && *act != "gelu_pytorch_tanh")
            unsupported("hidden_activation", "'" + act->get<std::string>() + "' is not supported (Gemma's is gelu_pytorch_tanh)");
        if (gemma3) o["qk_norm"] = true;
        if (const json* v = find(c, "use_bidirectional_attention"); v && v->get<bool>())
            unsupported("use_bidirectional_attention", "bidirectional attention (EmbeddingGemma) is not supported");
        o["hidden_act"] = "gelu_tanh";
        o["norm_plus_one"] = o["embedding_scale"] = o["sandwich_norms"] = true;
        o["tie_word_embeddings"] = find(c, "tie_word_embeddings") ? c["tie_word_embeddings"].get<bool>() : true;
        for (const char* k : {"query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping"})
            if (const json* v = find(c, k)) o[k] = v->get<double>();
    } else if (const json* v = find(c, "hidden_act"); v && *v != "silu") {
        unsupported("hidden_act", "'" + v->get<std::string>() + "' is not supported (the decoder's MLP is SwiGLU: silu)");
    }
    if (const json* v = find(c, "mlp_bias"); v && v->get<bool>()) o["mlp_bias"] = true;
    // Qwen2 always has q/k/v biases (its config has no key for them); Llama's and Qwen3's
    // attention_bias puts one on o_proj too.
    if (arch == "Qwen2ForCausalLM") {
        o["attention_bias"] = true;
    } else if (const json* v = find(c, "attention_bias"); v && v->get<bool>()) {
        o["attention_bias"] = true;
        o["o_proj_bias"] = true;
    }
    if (arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM") o["qk_norm"] = true;
    moe_options(c, arch, o);
    const bool phi3 = arch == "Phi3ForCausalLM";
    if (phi3) o["fused_qkv"] = o["fused_gate_up"] = true;
    if (arch == "Qwen2ForCausalLM" || arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM") {
        if (const json* v = find(c, "use_sliding_window"); v && v->get<bool>())
            unsupported("use_sliding_window", "sliding-window attention is not supported");
        if (const json* types = find(c, "layer_types"); types && types->is_array())
            for (const auto& t : *types)
                if (t != "full_attention")
                    unsupported("layer_types", "'" + t.get<std::string>() + "' layers are not supported (full_attention is)");
    }
    // Mistral's window covers every layer; Gemma 2's the layers layer_types names sliding.
    if (arch == "MistralForCausalLM" || arch == "MixtralForCausalLM" || gemma || phi3)
        if (const json* v = find(c, "sliding_window")) {
            if (!v->is_number_integer() || v->get<int64_t>() < 1) unsupported("sliding_window", "must be a positive integer or null");
            o["sliding_window"] = *v;
        }
    if (gemma) {
        const json* types = find(c, "layer_types");
        if (!types || !types->is_array()) unsupported("layer_types", "missing (Gemma names each layer's attention)");
        o["layer_types"] = *types;
    }

    // Rotary embeddings: transformers 5 writes rope_parameters {rope_type, rope_theta, ...};
    // 4.x wrote rope_theta and rope_scaling {rope_type or type, ...}.
    const json* rope = find(c, "rope_parameters");
    std::string rope_key = "rope_parameters";
    if (!rope) rope = find(c, "rope_scaling"), rope_key = "rope_scaling";
    double theta = gemma3 ? 1000000.0 : 10000.0;  // transformers' defaults
    if (gemma3) {
        // Gemma 3's sliding layers rotate with their own base, unscaled: transformers 5 nests
        // both under rope_parameters by layer type; 4.x wrote rope_local_base_freq.
        double local = 10000.0;
        if (const json* v = find(c, "rope_local_base_freq")) local = v->get<double>();
        if (rope && find(*rope, "full_attention")) {
            if (const json* sliding = find(*rope, "sliding_attention")) {
                if (const json* t = find(*sliding, "rope_type"); t && *t != "default")
                    unsupported("rope_parameters.sliding_attention.rope_type",
                                "'" + t->get<std::string>() + "' is not supported (default is)");
                if (const json* v = find(*sliding, "rope_theta")) local = v->get<double>();
            }
            rope = find(*rope, "full_attention"), rope_key = "rope_parameters.full_attention";
        }
        o["sliding_rope_theta"] = local;
    }
    if (const json* v = find(c, "rope_theta")) theta = v->get<double>();
    if (rope && find(*rope, "rope_theta")) theta = (*rope)["rope_theta"].get<double>();
    o["rope_theta"] = theta;
    // Rotary over part of each head (Phi-4-mini's 0.75) is not built.
    const json* partial = rope ? find(*rope, "partial_rotary_factor") : nullptr;
    if (!partial) partial = find(c, "partial_rotary_factor");
    if (partial && partial->get<double>() != 1.0)
        unsupported("partial_rotary_factor", "rotary embeddings over part of each head are not supported (1.0 is)");
    std::string type = "default";
    if (rope) {
        if (const json* t = find(*rope, "rope_type")) type = t->get<std::string>();
        else if (const json* t2 = find(*rope, "type")) type = t2->get<std::string>();
    }
    if (type == "linear") {
        const json* v = find(*rope, "factor");
        if (!v) unsupported(rope_key + ".factor", "missing (linear scaling needs it)");
        o["rope_scaling_type"] = "linear";
        o["rope_scaling_factor"] = v->get<double>();
    } else if (type == "llama3") {
        o["rope_scaling_type"] = "llama3";
        const std::pair<const char*, const char*> keys[] = {{"factor", "rope_scaling_factor"},
                                                            {"low_freq_factor", "rope_scaling_low_freq_factor"},
                                                            {"high_freq_factor", "rope_scaling_high_freq_factor"}};
        for (const auto& [hf, ours] : keys) {
            const json* v = find(*rope, hf);
            if (!v) unsupported(rope_key + "." + hf, "missing (llama3 scaling needs it)");
            o[ours] = v->get<double>();
        }
        const json* ctx = find(*rope, "original_max_position_embeddings");
        if (!ctx) unsupported(rope_key + ".original_max_position_embeddings", "missing (llama3 scaling needs it)");
        o["rope_scaling_original_max_position_embeddings"] = ctx->get<int64_t>();
    } else if (type != "default") {
        unsupported(rope_key + ".rope_type", "'" + type + "' is not supported (default, linear and llama3 are)");
    }
    return o.dump();
}
