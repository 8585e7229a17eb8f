// toy_transformer.hpp — the small pre-LayerNorm causal transformer the test-only model
// plugins share (tests/plugins/toys): it runs over input embeddings that the plugin
// builds ([B, S, H]: image patches then tokens, or events), every projection a linear
// site a param plugin can adapt, attention through scaled_dot_product_attention with an
// explicit mask, optionally appending keys and values to a fthost::KvCache. With
// `cross`, each layer also attends to a memory (an image's patches, as a decoder attends
// to its encoder), whose keys and values a cache holds from the prefill on.
#pragma once

#include <fthost/torch.hpp>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace toys {

class ToyTransformer {
public:
    // Registers its parameters through the owning model's `param` and `linear` (under
    // "layers.<i>." and "norm.").
    ToyTransformer(int64_t hidden, int64_t heads, int64_t layers,
                   const std::function<fthost::LinearSite&(const std::string&, int64_t, int64_t)>& linear,
                   const std::function<at::Tensor(const std::string&, at::Tensor)>& param, bool cross = false,
                   bool causal = true)
        : hidden_(hidden), heads_(heads), causal_(causal) {
        for (int64_t i = 0; i < layers; ++i) {
            const std::string p = "layers." + std::to_string(i) + ".";
            Layer l;
            l.ln1_w = param(p + "ln1.weight", at::ones({hidden}));
            l.ln1_b = param(p + "ln1.bias", at::zeros({hidden}));
            l.q = &linear(p + "attn.q_proj", hidden, hidden);
            l.k = &linear(p + "attn.k_proj", hidden, hidden);
            l.v = &linear(p + "attn.v_proj", hidden, hidden);
            l.o = &linear(p + "attn.o_proj", hidden, hidden);
            l.ln2_w = param(p + "ln2.weight", at::ones({hidden}));
            l.ln2_b = param(p + "ln2.bias", at::zeros({hidden}));
            l.fc1 = &linear(p + "mlp.fc1", hidden, 4 * hidden);
            l.fc2 = &linear(p + "mlp.fc2", 4 * hidden, hidden);
            if (cross) {
                l.lnc_w = param(p + "ln_cross.weight", at::ones({hidden}));
                l.lnc_b = param(p + "ln_cross.bias", at::zeros({hidden}));
                l.cq = &linear(p + "cross_attn.q_proj", hidden, hidden);
                l.ck = &linear(p + "cross_attn.k_proj", hidden, hidden);
                l.cv = &linear(p + "cross_attn.v_proj", hidden, hidden);
                l.co = &linear(p + "cross_attn.o_proj", hidden, hidden);
            }
            layers_.push_back(l);
        }
        ln_w_ = param("norm.weight", at::ones({hidden}));
        ln_b_ = param("norm.bias", at::zeros({hidden}));
    }

    // Attention over x [B, S, H] where `valid` [B, S] marks real positions: a position sees
    // the valid ones up to itself (all of them when not causal; always itself, so padding
    // has no NaN); with cross layers, every position also attends to the valid positions
    // (`memory_valid` [B, M], none given: all) of `memory` [B, M, H].
    at::Tensor forward(at::Tensor x, const at::Tensor& valid, const at::Tensor& memory = {},
                       const at::Tensor& memory_valid = {}) {
        const int64_t S = x.size(1);
        const at::Tensor k = at::arange(S, valid.options().dtype(at::kLong));
        at::Tensor allowed = valid.unsqueeze(1).expand({valid.size(0), S, S});
        if (causal_) allowed = allowed & k.unsqueeze(0).le(k.unsqueeze(1)).unsqueeze(0);  // [q, k]
        allowed = allowed | at::eye(S, valid.options().dtype(at::kBool));
        return run(x, allowed.unsqueeze(1), nullptr, memory, memory_mask(memory, memory_valid));
    }

    // The same, appending to `cache`: the new positions see the cached valid ones. The
    // prefill passes `memory` and its keys and values go into the cache; later steps pass
    // none and read them from there.
    at::Tensor forward_cached(at::Tensor x, const at::Tensor& valid, fthost::KvCache& cache, const at::Tensor& memory = {},
                              const at::Tensor& memory_valid = {}) {
        if (memory.defined())
            cache.set_cross_valid(memory_valid.defined() ? memory_valid
                                                         : at::ones({memory.size(0), memory.size(1)},
                                                                    memory.options().dtype(at::kBool)));
        return run(x, cache.extend(valid), &cache, memory, cache.has_cross() ? cache.cross_mask() : at::Tensor());
    }

private:
    struct Layer {
        at::Tensor ln1_w, ln1_b, ln2_w, ln2_b, lnc_w, lnc_b;
        fthost::LinearSite *q, *k, *v, *o, *fc1, *fc2;
        fthost::LinearSite *cq = nullptr, *ck = nullptr, *cv = nullptr, *co = nullptr;
    };

    at::Tensor heads(const at::Tensor& t) const {
        return t.view({t.size(0), t.size(1), heads_, hidden_ / heads_}).transpose(1, 2);
    }

    // Layer i's cross-attention keys and values: from `memory` (stored in the cache when
    // there is one), or — at a decode step — from the cache.
    std::pair<at::Tensor, at::Tensor> cross_kv(size_t i, const at::Tensor& memory, fthost::KvCache* cache) const {
        const Layer& l = layers_[i];
        if (!memory.defined()) return cache->cross(i);
        std::pair<at::Tensor, at::Tensor> kv{heads((*l.ck)(memory)), heads((*l.cv)(memory))};
        if (cache) cache->set_cross(i, kv.first, kv.second);
        return kv;
    }

    // [B, 1, 1, M] bool from the memory's valid positions; undefined when all are.
    static at::Tensor memory_mask(const at::Tensor& memory, const at::Tensor& memory_valid) {
        if (!memory.defined() || !memory_valid.defined()) return {};
        return memory_valid.unsqueeze(1).unsqueeze(1);
    }

    at::Tensor run(at::Tensor x, const at::Tensor& allowed, fthost::KvCache* cache, const at::Tensor& memory,
                   const at::Tensor& cross_allowed) {
        const at::Tensor mask = at::zeros(allowed.sizes(), x.options())
                                    .masked_fill_(allowed.logical_not(), -std::numeric_limits<double>::infinity());
        const int64_t B = x.size(0), S = x.size(1);
        for (size_t i = 0; i < layers_.size(); ++i) {
            const Layer& l = layers_[i];
            at::Tensor h = at::layer_norm(x, {hidden_}, l.ln1_w, l.ln1_b);
            at::Tensor q = heads((*l.q)(h)), k = heads((*l.k)(h)), v = heads((*l.v)(h));
            if (cache) std::tie(k, v) = cache->append(i, k, v);
            at::Tensor a = at::scaled_dot_product_attention(q, k, v, mask);
            x = x + (*l.o)(a.transpose(1, 2).reshape({B, S, hidden_}));
            if (l.cq) {
                h = at::layer_norm(x, {hidden_}, l.lnc_w, l.lnc_b);
                const auto [ck, cv] = cross_kv(i, memory, cache);
                const std::optional<at::Tensor> cross_mask =
                    cross_allowed.defined() ? std::optional<at::Tensor>(cross_allowed) : std::nullopt;
                a = at::scaled_dot_product_attention(heads((*l.cq)(h)), ck, cv, cross_mask);
                x = x + (*l.co)(a.transpose(1, 2).reshape({B, S, hidden_}));
            }
            h = at::layer_norm(x, {hidden_}, l.ln2_w, l.ln2_b);
            x = x + (*l.fc2)(at::gelu((*l.fc1)(h)));
        }
        return at::layer_norm(x, {hidden_}, ln_w_, ln_b_);
    }

    int64_t hidden_, heads_;
    bool causal_;
    std::vector<Layer> layers_;
    at::Tensor ln_w_, ln_b_;
};

// Base of the toy models: parameters and linear sites registered with the small normal
// initialisation every toy uses.
class ToyModel : public fthost::ModelBase {
protected:
    fthost::LinearSite& linear(const std::string& name, int64_t in, int64_t out) {
        auto& s = register_linear(name, in, out, true, at::TensorOptions().dtype(at::kFloat));
        at::NoGradGuard ng;
        s.weight.normal_(0, 0.02);
        return s;
    }
    at::Tensor param(const std::string& name, at::Tensor t) { return register_parameter(name, std::move(t)); }
    // The transformer's hooks into this model's registration.
    auto linear_fn() {
        return [this](const std::string& n, int64_t in, int64_t out) -> fthost::LinearSite& { return linear(n, in, out); };
    }
    auto param_fn() {
        return [this](const std::string& n, at::Tensor t) { return param(n, std::move(t)); };
    }
};

}  // namespace toys
