#include "hf_config.hpp"

#include <fthost/hf_config.hpp>

#include <algorithm>

using nlohmann::json;
using fthost::hf::find;
using fthost::hf::unsupported;

namespace {

int64_t integer(const json& c, const char* key, int64_t fallback) {
    const json* v = find(c, key);
    if (!v) return fallback;
    if (!v->is_number_integer()) unsupported(key, "not an integer");
    return v->get<int64_t>();
}

// transformers' activation for the feed-forward: dense_act_fn and is_gated_act when the
// file has them (they override what feed_forward_proj implies), else feed_forward_proj
// ("gated-gelu" meaning gelu_new). As the plugin's feed_forward_proj option.
std::string feed_forward(const json& c) {
    std::string proj = "relu";
    if (const json* v = find(c, "feed_forward_proj")) proj = v->get<std::string>();
    const bool gated_proj = proj.rfind("gated-", 0) == 0;
    std::string act = gated_proj ? proj.substr(6) : proj;
    if (proj == "gated-gelu") act = "gelu_new";
    bool gated = gated_proj;
    if (const json* v = find(c, "is_gated_act")) gated = v->get<bool>();
    if (const json* v = find(c, "dense_act_fn")) act = v->get<std::string>();
    if (act == "gelu_pytorch_tanh") act = "gelu_new";
    if (act == "swish") act = "silu";
    if (act != "relu" && act != "gelu" && act != "gelu_new" && act != "silu")
        unsupported(find(c, "dense_act_fn") ? "dense_act_fn" : "feed_forward_proj",
                    "activation '" + act + "' is not supported (relu, gelu, gelu_new, silu are)");
    if (gated && act == "gelu")
        unsupported("dense_act_fn", "a gated exact (erf) gelu is not supported (gated-gelu is gelu_new)");
    return (gated ? "gated-" : "") + act;
}

}  // namespace

std::string t5_options_from_hf_checkpoint(const std::string& config_json, const std::vector<std::string>& names) {
    const json c = fthost::hf::parse_config(config_json);
    json o = json::object();
    for (const char* k : {"vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"}) {
        const json* v = find(c, k);
        if (!v || !v->is_number_integer()) unsupported(k, "missing or not an integer");
        o[k] = *v;
    }
    o["num_decoder_layers"] = integer(c, "num_decoder_layers", 0);
    o["relative_attention_num_buckets"] = integer(c, "relative_attention_num_buckets", 32);
    o["relative_attention_max_distance"] = integer(c, "relative_attention_max_distance", 128);
    o["decoder_start_token_id"] = integer(c, "decoder_start_token_id", integer(c, "pad_token_id", 0));
    if (const json* v = find(c, "layer_norm_epsilon")) o["layer_norm_epsilon"] = v->get<double>();
    if (const json* v = find(c, "initializer_factor")) o["initializer_factor"] = v->get<double>();
    o["feed_forward_proj"] = feed_forward(c);
    // The head: lm_head.weight when the checkpoint stores it (transformers then unties it,
    // whatever tie_word_embeddings says), else shared.weight. The d_model^-0.5 rescale:
    // scale_decoder_outputs as transformers 5 writes it, else the raw tie_word_embeddings
    // (T5 v1.0 ties and rescales; v1.1 and FLAN-T5 say false).
    o["tie_word_embeddings"] = std::find(names.begin(), names.end(), "lm_head.weight") == names.end();
    if (const json* v = find(c, "scale_decoder_outputs")) o["scale_decoder_outputs"] = v->get<bool>();
    else if (const json* t = find(c, "tie_word_embeddings")) o["scale_decoder_outputs"] = t->get<bool>();
    else o["scale_decoder_outputs"] = true;
    return o.dump();
}
