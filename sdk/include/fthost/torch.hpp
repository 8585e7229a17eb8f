// torch.hpp — the LibTorch half of the C++ layer: tensor handles as at::Tensor, and
// one macro per kind (FTHOST_MODEL, FTHOST_PARAM, FTHOST_OBJECTIVE) that turns a C++
// class into the C function tables of fthost.h.
#pragma once

#include <fthost/plugin.hpp>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <torch/headeronly/version.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#define FTHOST_DETAIL_STR2(x) #x
#define FTHOST_DETAIL_STR(x) FTHOST_DETAIL_STR2(x)
// The LibTorch major.minor a plugin is built with; the host refuses a mismatch.
#define FTHOST_TORCH_VERSION FTHOST_DETAIL_STR(TORCH_VERSION_MAJOR) "." FTHOST_DETAIL_STR(TORCH_VERSION_MINOR)

namespace fthost {
inline namespace v1 {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// ---- handles ---------------------------------------------------------------------------
// A handle is a heap-allocated at::Tensor (one reference). Both sides use the same
// LibTorch major.minor, which the loader checks.
inline ft_tensor new_handle(at::Tensor t) { return reinterpret_cast<ft_tensor>(new at::Tensor(std::move(t))); }
inline const at::Tensor& borrow(ft_tensor h) { return *reinterpret_cast<at::Tensor*>(h); }
inline at::Tensor take(ft_tensor h) {
    auto* p = reinterpret_cast<at::Tensor*>(h);
    at::Tensor t = std::move(*p);
    delete p;
    return t;
}
inline at::Tensor borrow_or_undefined(ft_tensor h) { return h ? borrow(h) : at::Tensor(); }

// A batch with its tensors borrowed as at::Tensor.
struct BatchView {
    at::Tensor input_ids, labels, position_ids, sequence_ids;
    int64_t num_items_in_batch = 0;
    int64_t num_examples_in_batch = 0;  // 0 from an ABI 1.0 host
    std::map<std::string, at::Tensor> extras;

    explicit BatchView(const ft_batch& b)
        : input_ids(borrow(b.input_ids)),
          labels(borrow(b.labels)),
          position_ids(borrow(b.position_ids)),
          sequence_ids(borrow(b.sequence_ids)),
          num_items_in_batch(b.num_items_in_batch) {
        if (FT_HAS_FIELD(&b, ft_batch, num_examples_in_batch)) num_examples_in_batch = b.num_examples_in_batch;
        for (uint32_t i = 0; i < b.extra_count; ++i) extras.emplace(b.extras[i].name, borrow(b.extras[i].tensor));
    }
    // A named extra input; throws naming what is missing.
    const at::Tensor& extra(const std::string& name) const {
        auto it = extras.find(name);
        if (it == extras.end()) throw Error("the batch has no '" + name + "' input (is the data shape right?)", FT_ERR_INVALID_ARGUMENT);
        return it->second;
    }
};

inline void visit_all(const NamedTensors& tensors, ft_tensor_visitor visit, void* user) {
    for (const auto& [name, t] : tensors) visit(user, name.c_str(), reinterpret_cast<ft_tensor>(const_cast<at::Tensor*>(&t)));
}

// A model's named outputs of one forward (ABI 1.6): what objectives read through
// Run::model_outputs. Outputs nobody asked for are dropped without a copy.
class ModelOutputs {
public:
    explicit ModelOutputs(ft_model_output* out) : out_(out) {}
    // True when the caller takes named outputs (compute optional ones only then).
    bool wanted() const { return out_ && FT_HAS_FIELD(out_, ft_model_output, output_user) && out_->add_output; }
    void add(const std::string& name, at::Tensor t) const {
        if (wanted()) out_->add_output(out_->output_user, name.c_str(), new_handle(std::move(t)));
    }

private:
    ft_model_output* out_;
};

// Where a model's encode_row puts one example's tensors (fthost.h's ft_example_sink).
class ExampleSink {
public:
    explicit ExampleSink(const ft_example_sink* sink) : sink_(sink) {}
    // One named tensor of the example; the batch pads every dim with pad_value.
    void add(const std::string& name, const at::Tensor& t, double pad_value = 0.0) const {
        sink_->add(sink_->user, name.c_str(), reinterpret_cast<ft_tensor>(const_cast<at::Tensor*>(&t)), pad_value);
    }
    // The example's number of steps (models that read no text).
    void set_steps(int64_t steps) const { sink_->set_steps(sink_->user, steps); }

private:
    const ft_example_sink* sink_;
};

// ---- operators from kernels/ ------------------------------------------------------------
// The host registers fused operators under `fthost::` with LibTorch's dispatcher (CPU
// reference + CUDA). Plugins call them by name, so they never link kernel code; when a
// host lacks an operator the same maths runs as plain ATen ops.
namespace ops {

// Hugging Face's LlamaRMSNorm: w * cast(x * rsqrt(mean(x^2) + eps)), statistics in fp32+.
// A weight kept in a checkpoint's narrower dtype (a frozen bf16 base) meets x in x's.
inline at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
    const at::Tensor w = weight.scalar_type() == x.scalar_type() ? weight : weight.to(x.scalar_type());
    static const auto op = c10::Dispatcher::singleton().findSchema({"fthost::rms_norm", ""});
    if (op) return op->typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>().call(x, w, eps);
    at::Tensor xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));
    xf = xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps);
    return w * xf.to(x.scalar_type());
}

// x W^T + b for a W of any floating dtype. When W is narrower than x (a frozen base kept
// in the checkpoint's bf16) and autocast is off, x is cast to W's dtype for the product, as
// PEFT's base layers compute, and the result back to x's: autograd then keeps the narrow
// x and the W that is already held, never a widened copy of W. Under autocast LibTorch
// casts both itself.
inline at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
    if (x.scalar_type() == w.scalar_type() || at::autocast::is_autocast_enabled(x.device().type()))
        return at::linear(x, w, b);
    const at::Tensor bias = b.defined() && b.scalar_type() != w.scalar_type() ? b.to(w.scalar_type()) : b;
    return at::linear(x.to(w.scalar_type()), w, bias).to(x.scalar_type());
}

// What an embedding lookup hands the residual stream: float32 at least, whatever dtype
// the table is stored in.
inline at::Tensor embedding(const at::Tensor& table, const at::Tensor& ids) {
    at::Tensor x = at::embedding(table, ids);
    const auto wide = at::promote_types(x.scalar_type(), at::kFloat);
    return x.scalar_type() == wide ? x : x.to(wide);
}

}  // namespace ops

// ---- models -----------------------------------------------------------------------------

// One adaptable projection. The model calls it like a linear layer; a param plugin may
// have installed its own forward for it.
struct LinearSite {
    std::string name;
    int64_t in_features = 0, out_features = 0;
    at::Tensor weight, bias;
    ft_linear_forward_fn fn = nullptr;
    void* ctx = nullptr;

    at::Tensor operator()(const at::Tensor& x) const {
        if (!fn) return ops::linear(x, weight, bias);
        at::Tensor in = x;
        ft_tensor y = nullptr;
        ft_error err{};
        const ft_status s = fn(ctx, reinterpret_cast<ft_tensor>(&in), &y, &err);
        if (s != FT_OK) throw Error(name + ": " + err.message, s);
        return take(y);
    }
};

// A key/value cache for incremental decoding: per layer, the keys and values of every
// token so far, and which of those tokens are real (not padding). A model that declares
// forward_cached() keeps its state here.
//
// Storage is allocated once per capacity ([B, kv_heads, capacity, head_dim] per layer)
// and tokens are written in place at a cursor kept on the device, so appending never
// copies the past (capacity doubles when an unreserved cache fills). An unreserved cache
// returns the keys, values and mask of the written tokens only. A reserved one returns
// the whole capacity, unwritten slots masked out (they hold zeros, never NaN): then
// nothing in a forward depends on host-side values that change from step to step, so a
// host may capture a decode step in a CUDA graph and replay it (the cursor advances on
// the device at each replay; length() counts only forwards that ran on the host).
class KvCache {
public:
    virtual ~KvCache() = default;
    int64_t length() const { return length_; }
    int64_t capacity() const { return valid_.defined() ? valid_.size(1) : 0; }
    // Allocates room for `tokens` tokens per row at the first forward (and then never
    // grows, unless a forward goes past it).
    void reserve(int64_t tokens) { reserved_ = std::max(reserved_, tokens); }
    // Adds the new tokens' validity [B, t] (call once per forward, before the layers)
    // and returns the mask for them: [B, 1, t, span], true where query i may attend key
    // j — valid keys up to and including its own position (and always itself, so that a
    // padding query has one key and no NaN). span: the capacity when reserved, else the
    // length so far.
    at::Tensor extend(const at::Tensor& valid_new) {
        const int64_t t = valid_new.size(1);
        if (!valid_.defined() || length_ + t > capacity()) grow(valid_new, length_ + t);
        const auto longs = valid_new.options().dtype(at::kLong);
        slots_ = cursor_ + at::arange(t, longs);  // this forward's slots, computed on the device
        valid_.index_copy_(1, slots_, valid_new);
        cursor_.add_(t);
        length_ += t;
        const at::Tensor k = at::arange(span(), longs).unsqueeze(0), q = slots_.unsqueeze(1);
        const at::Tensor valid = valid_.narrow(1, 0, span());
        at::Tensor allowed = (valid.unsqueeze(1) & k.le(q).unsqueeze(0)) | k.eq(q).unsqueeze(0);
        return allowed.unsqueeze(1);
    }
    // The mask extend() returned, for a layer with a sliding window of w keys: query i
    // sees key j only when i - j < w (transformers' sliding-window mask). A row's real
    // tokens sit in consecutive slots after its left padding, so slots count positions.
    at::Tensor sliding_window(const at::Tensor& allowed, int64_t w) const {
        const at::Tensor k = at::arange(span(), slots_.options()).unsqueeze(0), q = slots_.unsqueeze(1);
        return allowed & (q - k).lt(w).unsqueeze(0).unsqueeze(0);
    }
    // Writes a layer's new keys and values [B, kv_heads, t, head_dim] into this forward's
    // slots; returns that layer's over the span (see extend).
    std::pair<at::Tensor, at::Tensor> append(size_t layer, const at::Tensor& k, const at::Tensor& v) {
        if (k_.size() <= layer) k_.resize(layer + 1), v_.resize(layer + 1);
        // Each buffer in its own tensor's dtype: under autocast the keys (rotated in fp32)
        // and the values (a bf16 projection) differ.
        for (auto [buf, src] : {std::pair{&k_[layer], &k}, std::pair{&v_[layer], &v}}) {
            if (buf->defined() && buf->size(2) == capacity()) continue;
            at::Tensor grown = at::zeros({src->size(0), src->size(1), capacity(), src->size(3)}, src->options());
            if (buf->defined()) grown.narrow(2, 0, buf->size(2)).copy_(*buf);
            *buf = grown;
        }
        k_[layer].index_copy_(2, slots_, k);
        v_[layer].index_copy_(2, slots_, v);
        return {k_[layer].narrow(2, 0, span()), v_[layer].narrow(2, 0, span())};
    }

    // Rows in a new order: row i becomes old row rows[i] (int64 [B'] on the cache's device;
    // repeats allowed, so that one prefill of a prompt serves all its samples).
    void select_rows(const at::Tensor& rows) {
        for (auto* list : {&k_, &v_, &cross_k_, &cross_v_})
            for (auto& t : *list)
                if (t.defined()) t = t.index_select(0, rows);
        for (auto* t : {&valid_, &cross_valid_})
            if (t->defined()) *t = t->index_select(0, rows);
    }

    // Cross-attention state (an encoder-decoder's decoder over the encoder's output, text
    // over an image's patches): each layer's keys and values [B, heads, S, head_dim] are
    // set once, at the prefill, and every later step reads them; `valid` [B, S] marks the
    // real memory positions.
    bool has_cross() const { return cross_valid_.defined(); }
    void set_cross(size_t layer, at::Tensor k, at::Tensor v) {
        if (cross_k_.size() <= layer) cross_k_.resize(layer + 1), cross_v_.resize(layer + 1);
        cross_k_[layer] = std::move(k);
        cross_v_[layer] = std::move(v);
    }
    std::pair<at::Tensor, at::Tensor> cross(size_t layer) const {
        if (layer >= cross_k_.size() || !cross_k_[layer].defined())
            throw Error("KvCache: no cross-attention state for layer " + std::to_string(layer) + " (set it at the prefill)");
        return {cross_k_[layer], cross_v_[layer]};
    }
    void set_cross_valid(at::Tensor valid) { cross_valid_ = std::move(valid); }
    // [B, 1, 1, S]: true where a query may attend memory position j.
    at::Tensor cross_mask() const { return cross_valid_.unsqueeze(1).unsqueeze(1); }

private:
    int64_t span() const { return reserved_ > 0 ? capacity() : length_; }

    // New storage for at least `needed` tokens: the reservation, else double the old.
    void grow(const at::Tensor& like, int64_t needed) {
        const int64_t cap = std::max({needed, reserved_, 2 * capacity()});
        at::Tensor valid = at::zeros({like.size(0), cap}, like.options().dtype(at::kBool));
        if (valid_.defined()) valid.narrow(1, 0, valid_.size(1)).copy_(valid_);
        valid_ = valid;
        if (!cursor_.defined()) cursor_ = at::zeros({}, like.options().dtype(at::kLong));
        // Layer buffers follow in append(), which sees their shape.
    }

    std::vector<at::Tensor> k_, v_;  // per layer [B, kv_heads, capacity, head_dim]
    std::vector<at::Tensor> cross_k_, cross_v_;  // per layer [B, heads, S, head_dim], set once
    at::Tensor cross_valid_;                     // bool [B, S]: real memory positions
    at::Tensor valid_;               // bool [B, capacity]: written and not padding
    at::Tensor cursor_;              // long scalar on the device: the next free slot
    at::Tensor slots_;               // long [t]: the current forward's slots
    int64_t length_ = 0, reserved_ = 0;
};

// Base for model plugins: holds the named parameters and the linear sites. A model
// class adds forward(), lm_head(), vocab_size(), and optionally
// forward_cached(const BatchView&, KvCache&) for incremental decoding.
class ModelBase {
public:
    virtual ~ModelBase() = default;
    const NamedTensors& parameters() const { return params_; }
    std::vector<std::unique_ptr<LinearSite>>& sites() { return sites_; }
    bool training() const { return training_; }
    void set_training(bool on) { training_ = on; }
    // On when the stage asks for it and the model declares
    // `static constexpr bool supports_activation_checkpointing = true` (it then wraps its
    // blocks with fthost::checkpointed, <fthost/activation_checkpoint.hpp>).
    bool activation_checkpointing() const { return checkpointing_; }
    void set_activation_checkpointing(bool on) { checkpointing_ = on; }

    // Where parameters are made: on the meta device while the host creates the model to
    // load a checkpoint into it (ft_host_api.loading_weights: no memory, and initialisers
    // run as no-ops), else on the CPU; in `dtype`. The host moves them to the run's device.
    static at::TensorOptions parameter_options(const Host& host, at::ScalarType dtype = at::kFloat) {
        const ft_host_api* api = host.api();
        const bool loading = FT_HAS_FIELD(api, ft_host_api, loading_weights) && api->loading_weights &&
                             api->loading_weights() != 0;
        return at::TensorOptions().dtype(dtype).device(loading ? at::kMeta : at::kCPU);
    }

protected:
    at::Tensor register_parameter(const std::string& name, at::Tensor t) {
        t.set_requires_grad(true);
        params_.emplace_back(name, t);
        return t;
    }
    // Registers "<name>.weight" (and "<name>.bias") and returns the site to call.
    LinearSite& register_linear(const std::string& name, int64_t in, int64_t out, bool bias,
                                const at::TensorOptions& opts) {
        auto site = std::make_unique<LinearSite>();
        site->name = name;
        site->in_features = in;
        site->out_features = out;
        // nn.Linear's default init: U(-1/sqrt(in), 1/sqrt(in)); models usually re-init.
        const double bound = 1.0 / std::sqrt(static_cast<double>(in));
        site->weight = register_parameter(name + ".weight", at::empty({out, in}, opts).uniform_(-bound, bound));
        if (bias) site->bias = register_parameter(name + ".bias", at::zeros({out}, opts));
        sites_.push_back(std::move(site));
        return *sites_.back();
    }

private:
    NamedTensors params_;
    std::vector<std::unique_ptr<LinearSite>> sites_;
    bool training_ = true;
    bool checkpointing_ = false;
};

namespace detail {
template <class T, class = void>
struct HasForwardCached : std::false_type {};
template <class T>
struct HasForwardCached<
    T, std::void_t<decltype(std::declval<T&>().forward_cached(std::declval<const BatchView&>(), std::declval<KvCache&>()))>>
    : std::true_type {};

// Optional Hugging Face support: `static constexpr const char* hf_architectures[] =
// {"LlamaForCausalLM", nullptr};` and `static std::string options_from_hf_config(const
// std::string& config_json)`.
template <class M, class = void>
struct HasHfConfig : std::false_type {};
template <class M>
struct HasHfConfig<M, std::void_t<decltype(M::hf_architectures), decltype(M::options_from_hf_config(std::string()))>>
    : std::true_type {};

// ABI 1.7, all optional: `static std::string options_from_hf_checkpoint(const std::string&
// config_json, const std::vector<std::string>& tensor_names)` together with
// hf_architectures (instead of options_from_hf_config, when the tensors tell what the
// config does not); `static constexpr const char* hf_extra_tensors[] = {..., nullptr}`;
// `static constexpr const char* default_adapter_targets[] = {"q", "v", nullptr}`.
template <class M, class = void>
struct HasHfCheckpoint : std::false_type {};
template <class M>
struct HasHfCheckpoint<M, std::void_t<decltype(M::hf_architectures), decltype(M::options_from_hf_checkpoint(
                                                                          std::string(), std::vector<std::string>()))>>
    : std::true_type {};
template <class M, class = void>
struct HfExtraTensors {
    static constexpr const char* const* value = nullptr;
};
template <class M>
struct HfExtraTensors<M, std::void_t<decltype(M::hf_extra_tensors)>> {
    static constexpr const char* const* value = M::hf_extra_tensors;
};
template <class M, class = void>
struct DefaultAdapterTargets {
    static constexpr const char* const* value = nullptr;
};
template <class M>
struct DefaultAdapterTargets<M, std::void_t<decltype(M::default_adapter_targets)>> {
    static constexpr const char* const* value = M::default_adapter_targets;
};

// The tensor names the host passes to options_from_hf_checkpoint: a JSON array of
// strings (escapes as JSON writes them; \u escapes become UTF-8).
inline std::vector<std::string> parse_string_array(const char* json) {
    std::vector<std::string> out;
    const char* p = json;
    const auto fail = [] { throw Error("tensor names: not a JSON array of strings", FT_ERR_INVALID_ARGUMENT); };
    const auto skip = [&] {
        while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') ++p;
    };
    const auto hex4 = [&] {
        unsigned v = 0;
        for (int i = 0; i < 4; ++i, ++p) {
            const char c = *p;
            v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : (fail(), 0));
        }
        return v;
    };
    const auto utf8 = [](std::string& s, unsigned c) {
        if (c < 0x80) s += static_cast<char>(c);
        else if (c < 0x800) s += static_cast<char>(0xC0 | (c >> 6)), s += static_cast<char>(0x80 | (c & 0x3F));
        else if (c < 0x10000)
            s += static_cast<char>(0xE0 | (c >> 12)), s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
                s += static_cast<char>(0x80 | (c & 0x3F));
        else
            s += static_cast<char>(0xF0 | (c >> 18)), s += static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
                s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)), s += static_cast<char>(0x80 | (c & 0x3F));
    };
    skip();
    if (*p++ != '[') fail();
    skip();
    if (*p == ']') return out;
    for (;;) {
        skip();
        if (*p++ != '"') fail();
        std::string s;
        while (*p != '"') {
            if (!*p) fail();
            if (*p != '\\') {
                s += *p++;
                continue;
            }
            ++p;
            const char e = *p++;
            switch (e) {
                case '"': case '\\': case '/': s += e; break;
                case 'b': s += '\b'; break;
                case 'f': s += '\f'; break;
                case 'n': s += '\n'; break;
                case 'r': s += '\r'; break;
                case 't': s += '\t'; break;
                case 'u': {
                    unsigned c = hex4();
                    if (c >= 0xD800 && c < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                        p += 2;
                        c = 0x10000 + ((c - 0xD800) << 10) + (hex4() - 0xDC00);
                    }
                    utf8(s, c);
                    break;
                }
                default: fail();
            }
        }
        ++p;
        out.push_back(std::move(s));
        skip();
        if (*p == ']') return out;
        if (*p++ != ',') fail();
    }
}

// ABI 1.8: `static constexpr bool keeps_stored_dtypes = true` — the model computes with
// parameters in a checkpoint's stored dtype (ops::linear, ops::rms_norm, ops::embedding).
template <class M, class = void>
struct KeepsStoredDtypes : std::false_type {};
template <class M>
struct KeepsStoredDtypes<M, std::void_t<decltype(M::keeps_stored_dtypes)>> : std::bool_constant<M::keeps_stored_dtypes> {};

// ABI 1.9: `static constexpr bool takes_base_on_host = true` — a parameterisation that
// takes the linear sites' weights in host memory and moves what it keeps of them to
// Host::run_device itself (ft_param_vtable.takes_base_on_host).
template <class P, class = void>
struct TakesBaseOnHost : std::false_type {};
template <class P>
struct TakesBaseOnHost<P, std::void_t<decltype(P::takes_base_on_host)>> : std::bool_constant<P::takes_base_on_host> {};

template <class M, class = void>
struct SupportsCheckpointing : std::false_type {};
template <class M>
struct SupportsCheckpointing<M, std::void_t<decltype(M::supports_activation_checkpointing)>>
    : std::bool_constant<M::supports_activation_checkpointing> {};

// `static constexpr bool graph_safe_decode = true`: the model's forward_cached does only
// device work on the batch and on what KvCache returns (no .item(), no host state that
// changes per step), so the host may reserve its cache and replay decode steps from a
// CUDA graph (ABI 1.5 cache_reserve).
template <class M, class = void>
struct GraphSafeDecode : std::false_type {};
template <class M>
struct GraphSafeDecode<M, std::void_t<decltype(M::graph_safe_decode)>> : std::bool_constant<M::graph_safe_decode> {};

// ABI 1.6, all optional: `at::Tensor forward(const BatchView&, const ModelOutputs&)`
// (named outputs besides the hidden states), `static constexpr uint32_t inputs` and
// `static constexpr int32_t label_alignment` (defaults FT_INPUT_TEXT, FT_LABEL_NEXT),
// `void encode_row(const std::string& row_json, ft_label_policy, int64_t max_steps,
// const ExampleSink&)` (required with FT_INPUT_FIELDS), and no lm_head()/vocab_size()
// for a model without an LM head; `int64_t decoder_start_id() const` (required with
// FT_INPUT_SOURCE).
template <class M, class = void>
struct HasNamedOutputs : std::false_type {};
template <class M>
struct HasNamedOutputs<
    M, std::void_t<decltype(std::declval<M&>().forward(std::declval<const BatchView&>(), std::declval<const ModelOutputs&>()))>>
    : std::true_type {};
template <class M, class = void>
struct InputsOf : std::integral_constant<uint32_t, FT_INPUT_TEXT> {};
template <class M>
struct InputsOf<M, std::void_t<decltype(M::inputs)>> : std::integral_constant<uint32_t, M::inputs> {};
template <class M, class = void>
struct LabelAlignmentOf : std::integral_constant<int32_t, FT_LABEL_NEXT> {};
template <class M>
struct LabelAlignmentOf<M, std::void_t<decltype(M::label_alignment)>> : std::integral_constant<int32_t, M::label_alignment> {};
template <class M, class = void>
struct HasEncodeRow : std::false_type {};
template <class M>
struct HasEncodeRow<M, std::void_t<decltype(std::declval<M&>().encode_row(std::declval<const std::string&>(), ft_label_policy{},
                                                                          int64_t{}, std::declval<const ExampleSink&>()))>>
    : std::true_type {};
template <class M, class = void>
struct HasDecoderStart : std::false_type {};
template <class M>
struct HasDecoderStart<M, std::void_t<decltype(std::declval<const M&>().decoder_start_id())>> : std::true_type {};
template <class M, class = void>
struct HasLmHead : std::false_type {};
template <class M>
struct HasLmHead<M, std::void_t<decltype(std::declval<M&>().lm_head(std::declval<const at::Tensor&>())),
                                decltype(std::declval<const M&>().vocab_size())>> : std::true_type {};

template <class M>
struct ModelThunks {
    static constexpr bool kNamedOutputs = HasNamedOutputs<M>::value;
    static constexpr bool kLmHead = HasLmHead<M>::value;
    static constexpr bool kEncodeRow = HasEncodeRow<M>::value;
    static_assert(!(InputsOf<M>::value & FT_INPUT_FIELDS) || HasEncodeRow<M>::value,
                  "a model with FT_INPUT_FIELDS needs encode_row(row_json, policy, max_steps, sink)");
    static_assert(!(InputsOf<M>::value & FT_INPUT_SOURCE) || HasDecoderStart<M>::value,
                  "a model with FT_INPUT_SOURCE needs int64_t decoder_start_id() const");
    static constexpr bool kDecoderStart = HasDecoderStart<M>::value;
    static constexpr bool kCached = HasForwardCached<M>::value;
    static constexpr bool kGraphSafe = kCached && GraphSafeDecode<M>::value;
    static constexpr bool kHf = HasHfConfig<M>::value;
    static constexpr bool kHfCheckpoint = HasHfCheckpoint<M>::value;
    static constexpr bool kCheckpointing = SupportsCheckpointing<M>::value;
    static M& self(ft_model* m) { return *reinterpret_cast<M*>(m); }
    static ft_status create(const ft_host_api* host, const ft_config* cfg, ft_model** out, ft_error* err) {
        return guard(err, [&] { *out = reinterpret_cast<ft_model*>(new M(Host(host), Config(host, cfg))); });
    }
    static void destroy(ft_model* m) { delete &self(m); }
    static ft_status named_parameters(ft_model* m, ft_tensor_visitor visit, void* user, ft_error* err) {
        return guard(err, [&] { visit_all(self(m).parameters(), visit, user); });
    }
    static uint32_t site_count(ft_model* m) { return static_cast<uint32_t>(self(m).sites().size()); }
    static ft_status site(ft_model* m, uint32_t i, ft_linear_site* out, ft_error* err) {
        return guard(err, [&] {
            auto& s = *self(m).sites().at(i);
            out->struct_size = sizeof(ft_linear_site);
            out->name = s.name.c_str();
            out->in_features = s.in_features;
            out->out_features = s.out_features;
            out->weight = reinterpret_cast<ft_tensor>(&s.weight);
            out->bias = s.bias.defined() ? reinterpret_cast<ft_tensor>(&s.bias) : nullptr;
        });
    }
    static ft_status set_forward(ft_model* m, uint32_t i, ft_linear_forward_fn fn, void* ctx, ft_error* err) {
        return guard(err, [&] {
            auto& s = *self(m).sites().at(i);
            s.fn = fn;
            s.ctx = ctx;
        });
    }
    static ft_status forward(ft_model* m, const ft_batch* batch, ft_model_output* out, ft_error* err) {
        return guard(err, [&] {
            if constexpr (kNamedOutputs) out->hidden_states = new_handle(self(m).forward(BatchView(*batch), ModelOutputs(out)));
            else out->hidden_states = new_handle(self(m).forward(BatchView(*batch)));
        });
    }
    static ft_status lm_head(ft_model* m, ft_tensor hidden, ft_tensor* out, ft_error* err) {
        return guard(err, [&] {
            if constexpr (kLmHead) *out = new_handle(self(m).lm_head(borrow(hidden)));
        });
    }
    static void set_training(ft_model* m, int32_t on) { self(m).set_training(on != 0); }
    static void set_checkpointing(ft_model* m, int32_t on) { self(m).set_activation_checkpointing(on != 0); }
    static int64_t vocab_size(ft_model* m) {
        if constexpr (kLmHead) return self(m).vocab_size();
        else return 0;
    }
    static int64_t decoder_start_id(ft_model* m) {
        if constexpr (kDecoderStart) return self(m).decoder_start_id();
        else return -1;
    }
    static ft_status encode_row(ft_model* m, const char* row_json, ft_label_policy policy, int64_t max_steps,
                                const ft_example_sink* sink, ft_error* err) {
        return guard(err, [&] {
            if constexpr (kEncodeRow) self(m).encode_row(row_json, policy, max_steps, ExampleSink(sink));
        });
    }
    static ft_status cache_create(ft_model*, ft_kv_cache** out, ft_error* err) {
        return guard(err, [&] { *out = reinterpret_cast<ft_kv_cache*>(new KvCache()); });
    }
    static void cache_destroy(ft_model*, ft_kv_cache* c) { delete reinterpret_cast<KvCache*>(c); }
    static ft_status cache_reserve(ft_model*, ft_kv_cache* c, int64_t tokens, ft_error* err) {
        return guard(err, [&] { reinterpret_cast<KvCache*>(c)->reserve(tokens); });
    }
    static ft_status cache_select_rows(ft_model*, ft_kv_cache* c, ft_tensor rows, ft_error* err) {
        return guard(err, [&] { reinterpret_cast<KvCache*>(c)->select_rows(borrow(rows)); });
    }
    static ft_status forward_cached(ft_model* m, ft_kv_cache* c, const ft_batch* batch, ft_model_output* out,
                                    ft_error* err) {
        return guard(err, [&] {
            if constexpr (kCached)
                out->hidden_states = new_handle(self(m).forward_cached(BatchView(*batch), *reinterpret_cast<KvCache*>(c)));
        });
    }
    static ft_status options_from_hf_config(const char* json, void (*write)(void*, const char*), void* user,
                                            ft_error* err) {
        return guard(err, [&] {
            if constexpr (kHf) write(user, M::options_from_hf_config(json).c_str());
        });
    }
    static ft_status options_from_hf_checkpoint(const char* json, const char* names, void (*write)(void*, const char*),
                                                void* user, ft_error* err) {
        return guard(err, [&] {
            if constexpr (kHfCheckpoint) write(user, M::options_from_hf_checkpoint(json, parse_string_array(names)).c_str());
        });
    }
    static constexpr const char* const* hf_architectures() {
        if constexpr (kHf || kHfCheckpoint) return M::hf_architectures;
        else return nullptr;
    }
    static constexpr ft_model_vtable vtable{sizeof(ft_model_vtable), &create, &destroy, &named_parameters,
                                            &site_count, &site, &set_forward, &forward,
                                            kLmHead ? &lm_head : nullptr,
                                            &set_training,
                                            kLmHead ? &vocab_size : nullptr,
                                            kCached ? &cache_create : nullptr,
                                            kCached ? &cache_destroy : nullptr,
                                            kCached ? &forward_cached : nullptr,
                                            hf_architectures(),
                                            kHf ? &options_from_hf_config : nullptr,
                                            kCheckpointing ? &set_checkpointing : nullptr,
                                            kGraphSafe ? &cache_reserve : nullptr,
                                            InputsOf<M>::value,
                                            LabelAlignmentOf<M>::value,
                                            kEncodeRow ? &encode_row : nullptr,
                                            kCached ? &cache_select_rows : nullptr,
                                            kDecoderStart ? &decoder_start_id : nullptr,
                                            kHfCheckpoint ? &options_from_hf_checkpoint : nullptr,
                                            HfExtraTensors<M>::value,
                                            DefaultAdapterTargets<M>::value,
                                            KeepsStoredDtypes<M>::value ? 1 : 0};
};
}  // namespace detail

// ---- parameterisations --------------------------------------------------------------------

// A param plugin's view of the model it adapts.
class ModelRef {
public:
    struct Site {
        uint32_t index;
        std::string name;
        int64_t in_features, out_features;
        at::Tensor weight, bias;
    };
    ModelRef(const ft_model_vtable* vt, ft_model* m) : vt_(vt), m_(m) {}

    std::vector<Site> sites() const {
        std::vector<Site> out;
        const uint32_t n = vt_->linear_site_count(m_);
        for (uint32_t i = 0; i < n; ++i) {
            ft_linear_site s{};
            ft_error err{};
            check(vt_->linear_site(m_, i, &s, &err), err);
            out.push_back({i, s.name, s.in_features, s.out_features, borrow(s.weight), borrow_or_undefined(s.bias)});
        }
        return out;
    }
    NamedTensors named_parameters() const {
        NamedTensors out;
        ft_error err{};
        check(vt_->named_parameters(
                  m_, [](void* u, const char* n, ft_tensor t) { static_cast<NamedTensors*>(u)->emplace_back(n, borrow(t)); },
                  &out, &err),
              err);
        return out;
    }
    // Whether the model computes with parameters in a narrower dtype than float32 (ABI 1.8
    // keeps_stored_dtypes).
    bool keeps_stored_dtypes() const {
        return FT_HAS_FIELD(vt_, ft_model_vtable, keeps_stored_dtypes) && vt_->keeps_stored_dtypes != 0;
    }
    // The model's default_adapter_targets (ABI 1.7); empty when it names none.
    std::vector<std::string> default_adapter_targets() const {
        std::vector<std::string> out;
        if (FT_HAS_FIELD(vt_, ft_model_vtable, default_adapter_targets) && vt_->default_adapter_targets)
            for (const char* const* t = vt_->default_adapter_targets; *t; ++t) out.emplace_back(*t);
        return out;
    }
    void set_forward(uint32_t index, ft_linear_forward_fn fn, void* ctx) const {
        ft_error err{};
        check(vt_->set_linear_forward(m_, index, fn, ctx, &err), err);
    }

private:
    const ft_model_vtable* vt_;
    ft_model* m_;
};

// Base for param plugins: installs C++ callables as site forwards and keeps them alive.
class ParamBase {
public:
    using Forward = std::function<at::Tensor(const at::Tensor&)>;
    explicit ParamBase(ModelRef model) : model_(model) {}
    virtual ~ParamBase() = default;
    const ModelRef& model() const { return model_; }
    bool training() const { return training_; }
    void set_training(bool on) { training_ = on; }

protected:
    void install(uint32_t site_index, Forward f) {
        forwards_.push_back(std::make_unique<Forward>(std::move(f)));
        model_.set_forward(site_index, &call, forwards_.back().get());
    }
    void uninstall(uint32_t site_index) { model_.set_forward(site_index, nullptr, nullptr); }

private:
    static ft_status call(void* ctx, ft_tensor x, ft_tensor* y, ft_error* err) {
        return guard(err, [&] { *y = new_handle((*static_cast<Forward*>(ctx))(borrow(x))); });
    }
    ModelRef model_;
    std::vector<std::unique_ptr<Forward>> forwards_;
    bool training_ = true;
};

namespace detail {
template <class P>
struct ParamThunks {
    static P& self(ft_param* p) { return *reinterpret_cast<P*>(p); }
    static ft_status create(const ft_host_api* host, const ft_config* cfg, const ft_model_vtable* vt, ft_model* m,
                            ft_param** out, ft_error* err) {
        return guard(err, [&] {
            *out = reinterpret_cast<ft_param*>(new P(Host(host), Config(host, cfg), ModelRef(vt, m)));
        });
    }
    static void destroy(ft_param* p) { delete &self(p); }
    static ft_status trainable(ft_param* p, ft_tensor_visitor visit, void* user, ft_error* err) {
        return guard(err, [&] { visit_all(self(p).trainable_parameters(), visit, user); });
    }
    static int32_t is_full(ft_param* p) { return self(p).is_full() ? 1 : 0; }
    static ft_status set_enabled(ft_param* p, int32_t on, ft_error* err) {
        return guard(err, [&] { self(p).set_enabled(on != 0); });
    }
    static void set_training(ft_param* p, int32_t on) { self(p).set_training(on != 0); }
    static ft_status merge(ft_param* p, ft_error* err) {
        return guard(err, [&] { self(p).merge(); });
    }
    // Optional: std::string peft_config() const — PEFT's adapter_config.json object.
    template <class Q, class = void>
    struct has_peft_config : std::false_type {};
    template <class Q>
    struct has_peft_config<Q, std::void_t<decltype(std::declval<const Q&>().peft_config())>> : std::true_type {};
    static ft_status peft_config(ft_param* p, void (*write)(void*, const char*), void* user, ft_error* err) {
        return guard(err, [&] {
            if constexpr (has_peft_config<P>::value) write(user, self(p).peft_config().c_str());
        });
    }
    static constexpr ft_param_vtable vtable{sizeof(ft_param_vtable), &create,       &destroy,
                                            &trainable,              &is_full,      &set_enabled,
                                            &set_training,           &merge,
                                            has_peft_config<P>::value ? &peft_config : nullptr,
                                            TakesBaseOnHost<P>::value ? 1 : 0};
};
}  // namespace detail

// ---- objectives -----------------------------------------------------------------------------

// Which model a Run service asks: the policy being trained (with gradients), the
// frozen reference, or the stage's teacher.
enum class RunModel : int32_t { policy = FT_RUN_POLICY, reference = FT_RUN_REFERENCE, teacher = FT_RUN_TEACHER };

// What an objective may ask of the running stage.
class Run {
public:
    Run(const ft_host_api* api, ft_run* run, const ft_batch* batch) : api_(api), run_(run), batch_(batch) {}
    // log p(label_t | tokens < t) per position, 0 where the label is ignored: [B, T].
    at::Tensor token_logprobs(RunModel model = RunModel::policy) const {
        ft_tensor out = nullptr;
        ft_error err{};
        check(api_->run_token_logprobs(run_, batch_, static_cast<int32_t>(model), &out, &err), err);
        return take(out);
    }
    // The same under softmax(logits / temperature). Hosts before ABI 1.4 compute it from
    // label_logits (the whole [N, V] tensor).
    at::Tensor token_logprobs(RunModel model, double temperature) const {
        if (FT_HAS_FIELD(api_, ft_host_api, run_token_logprobs_at)) {
            ft_tensor out = nullptr;
            ft_error err{};
            check(api_->run_token_logprobs_at(run_, batch_, static_cast<int32_t>(model), temperature, &out, &err), err);
            return take(out);
        }
        const at::Tensor& labels = borrow(batch_->labels);
        const at::Tensor mask = labels.ne(-100);
        const at::Tensor picked = at::log_softmax(label_logits(model) / temperature, -1)
                                      .gather(-1, labels.masked_select(mask).unsqueeze(-1))
                                      .squeeze(-1);
        return at::zeros(mask.sizes(), picked.options()).masked_scatter(mask, picked);
    }
    // Next-token logits at each labelled position, [N, V] in row-major label order.
    at::Tensor label_logits(RunModel model = RunModel::policy) const {
        if (!FT_HAS_FIELD(api_, ft_host_api, run_label_logits))
            throw Error("this host (ABI 1.0) cannot give label logits", FT_ERR_UNSUPPORTED);
        ft_tensor out = nullptr;
        ft_error err{};
        check(api_->run_label_logits(run_, batch_, static_cast<int32_t>(model), &out, &err), err);
        return take(out);
    }
    // The model's named outputs for this batch (its forward's ModelOutputs), by name.
    std::map<std::string, at::Tensor> model_outputs(RunModel model = RunModel::policy) const {
        if (!FT_HAS_FIELD(api_, ft_host_api, run_model_outputs))
            throw Error("this host (ABI before 1.6) cannot give a model's named outputs", FT_ERR_UNSUPPORTED);
        std::map<std::string, at::Tensor> out;
        ft_error err{};
        check(api_->run_model_outputs(
                  run_, batch_, static_cast<int32_t>(model),
                  [](void* u, const char* n, ft_tensor t) { (*static_cast<std::map<std::string, at::Tensor>*>(u))[n] = borrow(t); },
                  &out, &err),
              err);
        return out;
    }
    void metric(const char* name, double value) const { api_->run_metric(run_, name, value); }
    // Metric names are built at run time ("rewards/chosen"); values are detached scalars.
    void metric(const std::string& name, const at::Tensor& value) const { metric(name.c_str(), value.item<double>()); }

private:
    const ft_host_api* api_;
    ft_run* run_;
    const ft_batch* batch_;
};

namespace detail {
template <class O>
struct ObjectiveHolder {
    ObjectiveHolder(const ft_host_api* host, const ft_config* cfg) : api(host), obj(Host(host), Config(host, cfg)) {}
    const ft_host_api* api;
    O obj;
};

// Optional members of an objective class, with their defaults.
template <class O, class = void>
struct DataShapeOf : std::integral_constant<ft_data_shape, FT_DATA_SEQUENCES> {};
template <class O>
struct DataShapeOf<O, std::void_t<decltype(O::data_shape)>> : std::integral_constant<ft_data_shape, O::data_shape> {};
template <class O, class = void>
struct NeedsOf : std::integral_constant<uint32_t, 0u> {};
template <class O>
struct NeedsOf<O, std::void_t<decltype(O::needs)>> : std::integral_constant<uint32_t, O::needs> {};
template <class O, class = void>
struct HasOnDataset : std::false_type {};
template <class O>
struct HasOnDataset<O, std::void_t<decltype(std::declval<O&>().on_dataset(std::declval<const ft_dataset_info&>()))>>
    : std::true_type {};
template <class O, ft_label_policy Policy>
struct ObjectiveThunks {
    using H = ObjectiveHolder<O>;
    static ft_status create(const ft_host_api* host, const ft_config* cfg, ft_objective** out, ft_error* err) {
        return guard(err, [&] { *out = reinterpret_cast<ft_objective*>(new H(host, cfg)); });
    }
    static void destroy(ft_objective* o) { delete reinterpret_cast<H*>(o); }
    static ft_status loss(ft_objective* o, ft_run* run, const ft_batch* batch, ft_tensor* out, ft_error* err) {
        return guard(err, [&] {
            auto* h = reinterpret_cast<H*>(o);
            Run r(h->api, run, batch);
            *out = new_handle(h->obj.loss(r, BatchView(*batch)));
        });
    }
    static ft_status on_dataset(ft_objective* o, const ft_dataset_info* info, ft_error* err) {
        return guard(err, [&] { reinterpret_cast<H*>(o)->obj.on_dataset(*info); });
    }
    static constexpr auto on_dataset_fn() {
        ft_status (*f)(ft_objective*, const ft_dataset_info*, ft_error*) = nullptr;
        if constexpr (HasOnDataset<O>::value) f = &on_dataset;
        return f;
    }
    static constexpr ft_objective_vtable vtable{sizeof(ft_objective_vtable), Policy, &create, &destroy, &loss,
                                                DataShapeOf<O>::value, NeedsOf<O>::value, on_dataset_fn()};
};
}  // namespace detail

}  // namespace v1
}  // namespace fthost

#define FTHOST_DETAIL_DESC(ident, Class, kind, name, version, description, options, vt)                   \
    static const ft_plugin_desc fthost_desc_##ident = {                                                    \
        sizeof(ft_plugin_desc), FTHOST_ABI_MAJOR, FTHOST_ABI_MINOR, (kind), 0u, (name), (version),        \
        (description), FTHOST_TORCH_VERSION, ::fthost::detail::option_ptr(options),                      \
        ::fthost::detail::option_count(options), &(vt), ::fthost::detail::validate_fn<Class>()}

// A model class: ModelBase plus
//   Class(const fthost::Host&, const fthost::Config&)
//   at::Tensor forward(const fthost::BatchView&)      final hidden states [B, T, H]
//     or forward(const fthost::BatchView&, const fthost::ModelOutputs&) with named outputs
//   at::Tensor lm_head(const at::Tensor& hidden)      logits [.., V]   (optional with
//   int64_t vocab_size() const                                          vocab_size, 1.6)
// and optionally inputs / label_alignment / encode_row (ModelThunks above).
#define FTHOST_MODEL(ident, Class, name, version, description, options) \
    FTHOST_DETAIL_DESC(ident, Class, FT_KIND_MODEL, name, version, description, options, ::fthost::detail::ModelThunks<Class>::vtable)

// A param class: ParamBase plus
//   Class(const fthost::Host&, const fthost::Config&, fthost::ModelRef)
//   fthost::NamedTensors trainable_parameters()   bool is_full() const
//   void set_enabled(bool)                        void merge()
// Any class may add `static void validate(const fthost::Config&)` (throw via cfg.fail)
// to check its values when the config is validated.
#define FTHOST_PARAM(ident, Class, name, version, description, options) \
    FTHOST_DETAIL_DESC(ident, Class, FT_KIND_PARAM, name, version, description, options, ::fthost::detail::ParamThunks<Class>::vtable)

// An objective class:
//   Class(const fthost::Host&, const fthost::Config&)
//   at::Tensor loss(fthost::Run&, const fthost::BatchView&)
// and optionally
//   static constexpr ft_data_shape data_shape = FT_DATA_PAIRS;      (default FT_DATA_SEQUENCES)
//   static constexpr uint32_t needs = FT_NEEDS_REFERENCE;           (default 0)
//   void on_dataset(const ft_dataset_info&)                         (statistics before training)
// `policy` is FT_LABELS_ALL or FT_LABELS_COMPLETION.
#define FTHOST_OBJECTIVE(ident, Class, policy, name, version, description, options)                       \
    FTHOST_DETAIL_DESC(ident, Class, FT_KIND_OBJECTIVE, name, version, description, options,               \
                       (::fthost::detail::ObjectiveThunks<Class, policy>::vtable))
