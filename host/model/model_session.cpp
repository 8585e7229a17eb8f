// A model instance with its parameterisation: plugin lifecycle, forwards, caches,
// encode_row and named outputs, parameters. Label log-probs are in label_logprobs.cpp,
// stage directories in stage_dir.cpp.
#include "model/model_session.hpp"

#include "config/host_api.hpp"

#include <fthost/torch.hpp>

#include <cstddef>
#include <optional>

namespace fthost::host {

static TensorList collect(const std::function<ft_status(ft_tensor_visitor, void*, ft_error*)>& call) {
    TensorList out;
    ft_error err{};
    check(call([](void* u, const char* n, ft_tensor t) { static_cast<TensorList*>(u)->emplace_back(n, borrow(t)); },
               &out, &err),
          err);
    return out;
}

ModelSession::ModelSession(const PluginSection& model, const PluginRegistry& registry, at::Device device,
                           bool loading_weights)
    : model_(model), device_(device), registry_(&registry) {
    if (!model_.loaded) model_.loaded = &registry.require(FT_KIND_MODEL, model_.plugin);
    mvt_ = static_cast<const ft_model_vtable*>(model_.loaded->desc->vtable);
    traits_ = model_traits(mvt_);
    ft_error err{};
    {
        std::optional<LoadingWeightsScope> loading;
        if (loading_weights) loading.emplace();
        RunDeviceScope on(device_.str());
        check(mvt_->create(host_api(), &model_.config, &model_handle_, &err), err);
    }
    if (!loading_weights && device_ != at::kCPU) {
        at::NoGradGuard ng;
        for (auto& [_, p] : model_parameters()) p.set_data(p.to(device_));
    }
}

ModelSession::~ModelSession() {
    if (param_handle_) pvt_->destroy(param_handle_);
    if (model_handle_) mvt_->destroy(model_handle_);
}

void ModelSession::apply_param(const PluginSection& param) {
    if (param_handle_) throw Error("a parameterisation is already applied; merge it first");
    param_ = param;
    pvt_ = static_cast<const ft_param_vtable*>(param_.loaded->desc->vtable);
    ft_error err{};
    {
        RunDeviceScope on(device_.str());
        check(pvt_->create(host_api(), &param_.config, mvt_, model_handle_, &param_handle_, &err), err);
    }
    // What a parameterisation that takes its base in host memory did not keep goes to the
    // device now (a merge on the way, BasePlacement::sites_on_host, leaves it in host memory).
    if (device_ == at::kCPU || !takes_base_on_host(param_)) return;
    at::NoGradGuard ng;
    for (auto& [_, p] : model_parameters())
        if (p.device() != device_) adopt_parameter(p, p.to(device_));
}

bool takes_base_on_host(const PluginSection& param) {
    const auto* vt = static_cast<const ft_param_vtable*>(param.loaded->desc->vtable);
    return FT_HAS_FIELD(vt, ft_param_vtable, takes_base_on_host) && vt->takes_base_on_host != 0;
}

std::set<const void*> ModelSession::site_weights() const {
    std::set<const void*> out;
    const uint32_t n = mvt_->linear_site_count(model_handle_);
    for (uint32_t i = 0; i < n; ++i) {
        ft_linear_site s{};
        ft_error err{};
        check(mvt_->linear_site(model_handle_, i, &s, &err), err);
        if (s.weight) out.insert(borrow(s.weight).unsafeGetTensorImpl());
    }
    return out;
}

void ModelSession::merge_param() {
    if (!param_handle_) return;
    ft_error err{};
    check(pvt_->merge(param_handle_, &err), err);
    pvt_->destroy(param_handle_);
    param_handle_ = nullptr;
}

at::Tensor ModelSession::hidden_states(HostBatch& batch) {
    ft_batch fb = as_ft_batch(batch, batch.num_labels);
    return forward_checked(fb);
}

namespace {

// The host's side of ft_example_sink: copies what encode_row hands over.
struct FieldSink {
    EncodedFields fields;
    static void add(void* user, const char* name, ft_tensor t, double pad) {
        auto* self = static_cast<FieldSink*>(user);
        self->fields.fields.push_back({name ? name : "", borrow(t).to(at::kCPU).contiguous().clone(), pad});
    }
    static void set_steps(void* user, int64_t steps) { static_cast<FieldSink*>(user)->fields.steps = steps; }
};

}  // namespace

EncodedFields ModelSession::encode_row(const std::string& row_json, ft_label_policy policy, int64_t max_steps) {
    if (!traits_.encode_row) throw Error("model plugin '" + model_.plugin + "' has no encode_row (it reads text only)");
    FieldSink sink;
    const ft_example_sink c{sizeof(ft_example_sink), &sink, &FieldSink::add, &FieldSink::set_steps};
    ft_error err{};
    const ft_status s = traits_.encode_row(model_handle_, row_json.c_str(), policy, max_steps, &c, &err);
    if (s != FT_OK) throw Error("model '" + model_.plugin + "': " + err.message, s);
    for (const auto& f : sink.fields.fields)
        if (f.name.empty() || !f.value.defined()) throw Error("model '" + model_.plugin + "': encode_row gave an unnamed or undefined tensor");
    return std::move(sink.fields);
}

std::map<std::string, at::Tensor> ModelSession::model_outputs(const ft_batch& batch, bool adapters_off) {
    std::optional<at::NoGradGuard> ng;
    if (adapters_off) ng.emplace();
    std::map<std::string, at::Tensor> outputs;
    forward_checked(batch, adapters_off, &outputs);
    return outputs;
}

int64_t ModelSession::decoder_start_id() const {
    if (!(traits_.inputs & FT_INPUT_SOURCE) || !traits_.decoder_start_id) return -1;
    const int64_t id = traits_.decoder_start_id(model_handle_);
    if (id < 0) throw Error("model plugin '" + model_.plugin + "' gave decoder start id " + std::to_string(id));
    return id;
}

bool ModelSession::supports_kv_cache() const {
    return FT_HAS_FIELD(mvt_, ft_model_vtable, forward_cached) && mvt_->cache_create && mvt_->cache_destroy &&
           mvt_->forward_cached;
}

std::shared_ptr<ft_kv_cache> ModelSession::new_kv_cache() {
    if (!supports_kv_cache()) throw Error("model plugin '" + model_.plugin + "' has no KV cache", FT_ERR_UNSUPPORTED);
    ft_kv_cache* c = nullptr;
    ft_error err{};
    check(mvt_->cache_create(model_handle_, &c, &err), err);
    const ft_model_vtable* vt = mvt_;
    ft_model* m = model_handle_;
    return std::shared_ptr<ft_kv_cache>(c, [vt, m](ft_kv_cache* p) { vt->cache_destroy(m, p); });
}

bool ModelSession::reserve_kv_cache(ft_kv_cache* cache, int64_t tokens) {
    if (!FT_HAS_FIELD(mvt_, ft_model_vtable, cache_reserve) || !mvt_->cache_reserve) return false;
    ft_error err{};
    check(mvt_->cache_reserve(model_handle_, cache, tokens, &err), err);
    return true;
}

bool ModelSession::can_select_kv_cache_rows() const {
    return FT_HAS_FIELD(mvt_, ft_model_vtable, cache_select_rows) && mvt_->cache_select_rows;
}

void ModelSession::select_kv_cache_rows(ft_kv_cache* cache, const at::Tensor& rows) {
    if (!can_select_kv_cache_rows())
        throw Error("model plugin '" + model_.plugin + "' cannot reorder its KV cache rows", FT_ERR_UNSUPPORTED);
    ft_error err{};
    check(mvt_->cache_select_rows(model_handle_, cache, reinterpret_cast<ft_tensor>(const_cast<at::Tensor*>(&rows)), &err),
          err);
}

at::Tensor ModelSession::hidden_states_cached(ft_kv_cache* cache, HostBatch& batch) {
    ft_batch fb = as_ft_batch(batch, batch.num_labels);
    ft_model_output out{sizeof(ft_model_output), nullptr, nullptr, nullptr};
    ft_error err{};
    check(mvt_->forward_cached(model_handle_, cache, &fb, &out, &err), err);
    return take(out.hidden_states);
}

void ModelSession::set_activation_checkpointing(bool on) {
    if (!FT_HAS_FIELD(mvt_, ft_model_vtable, set_activation_checkpointing) || !mvt_->set_activation_checkpointing) {
        if (!on) return;
        throw Error("model plugin '" + model_.plugin + "' does not support activation checkpointing "
                    "(set [stage.train] activation_checkpointing = false)", FT_ERR_UNSUPPORTED);
    }
    mvt_->set_activation_checkpointing(model_handle_, on ? 1 : 0);
}

at::Tensor ModelSession::logits(const at::Tensor& hidden) {
    if (!mvt_->lm_head)
        throw Error("model plugin '" + model_.plugin + "' has no LM head: it predicts no tokens, so neither label "
                    "log-probs nor generation exist for it (use an objective that reads its named outputs)",
                    FT_ERR_UNSUPPORTED);
    ft_tensor out = nullptr;
    ft_error err{};
    check(mvt_->lm_head(model_handle_, reinterpret_cast<ft_tensor>(const_cast<at::Tensor*>(&hidden)), &out, &err), err);
    return take(out);
}

namespace {

// The host's side of ft_model_output.add_output.
void keep_output(void* user, const char* name, ft_tensor t) {
    (*static_cast<std::map<std::string, at::Tensor>*>(user))[name ? name : ""] = take(t);
}

}  // namespace

at::Tensor ModelSession::forward_checked(const ft_batch& batch, bool adapters_off,
                                         std::map<std::string, at::Tensor>* outputs) {
    if (adapters_off) {
        if (param_handle_ && is_full())
            throw Error("full fine-tuning has no adapters to switch off: its reference is a frozen copy");
        set_adapters_enabled(false);
    }
    // A forward with gradients collects named outputs, for the auxiliary loss among them.
    std::map<std::string, at::Tensor> collected;
    if (!outputs && at::GradMode::is_enabled()) outputs = &collected;
    ft_model_output out{sizeof(ft_model_output), nullptr, outputs ? &keep_output : nullptr, outputs};
    ft_error err{};
    const ft_status s = mvt_->forward(model_handle_, &batch, &out, &err);
    if (adapters_off) set_adapters_enabled(true);
    check(s, err);
    if (outputs) {
        auto aux = outputs->find(kAuxiliaryLoss);
        if (aux != outputs->end() && aux->second.requires_grad())
            auxiliary_ = auxiliary_.defined() ? auxiliary_ + aux->second : aux->second;
    }
    if (!out.hidden_states) throw Error("model plugin '" + model_.plugin + "': forward returned no hidden states");
    return take(out.hidden_states);
}


std::unique_ptr<ModelSession> ModelSession::frozen_copy() const {
    if (!registry_) throw Error("frozen_copy: this model was not made from a plugin registry");
    auto copy = std::make_unique<ModelSession>(model_, *registry_, device_, /*loading_weights=*/true);
    at::NoGradGuard ng;
    TensorList src = model_parameters(), dst = copy->model_parameters();
    for (size_t i = 0; i < src.size(); ++i) adopt_parameter(dst[i].second, src[i].second.detach().clone());
    copy->freeze();
    return copy;
}

void ModelSession::freeze() {
    for (auto& [_, p] : model_parameters()) p.set_requires_grad(false);
    set_training(false);
}

TensorList ModelSession::model_parameters() const {
    return collect([&](ft_tensor_visitor v, void* u, ft_error* e) { return mvt_->named_parameters(model_handle_, v, u, e); });
}

TensorList ModelSession::trainable_parameters() const {
    if (!param_handle_) throw Error("no parameterisation applied");
    return collect([&](ft_tensor_visitor v, void* u, ft_error* e) { return pvt_->trainable_parameters(param_handle_, v, u, e); });
}

bool ModelSession::is_full() const { return param_handle_ && pvt_->is_full(param_handle_) != 0; }

void ModelSession::set_training(bool on) {
    mvt_->set_training(model_handle_, on ? 1 : 0);
    if (param_handle_) pvt_->set_training(param_handle_, on ? 1 : 0);
}

void ModelSession::set_adapters_enabled(bool on) {
    if (!param_handle_) return;
    ft_error err{};
    check(pvt_->set_enabled(param_handle_, on ? 1 : 0, &err), err);
}

void put_tensors(std::map<std::string, at::Tensor>& tensors, const TensorList& into, const std::string& from,
                 const std::function<void(at::Tensor& param, at::Tensor& value)>& put) {
    at::NoGradGuard ng;
    std::set<std::string> used;
    for (auto [name, p] : into) {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw Error(from + ": missing tensor '" + name + "'");
        if (it->second.sizes() != p.sizes())
            throw Error(from + ": tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", the model expects " +
                        c10::str(p.sizes()));
        put(p, it->second);
        used.insert(name);
    }
    for (const auto& [name, _] : tensors)
        if (!used.count(name)) throw Error(from + ": unexpected tensor '" + name + "'");
}

void ModelSession::load_parameters(std::map<std::string, at::Tensor> tensors, const TensorList& into,
                                   const std::string& from) {
    put_tensors(tensors, into, from, [](at::Tensor& p, at::Tensor& t) { p.copy_(t); });
}

bool ModelSession::keeps_stored_dtypes() const {
    return FT_HAS_FIELD(mvt_, ft_model_vtable, keeps_stored_dtypes) && mvt_->keeps_stored_dtypes != 0;
}

void adopt_parameter(at::Tensor& p, const at::Tensor& value) {
    // set_data refuses a meta tensor (its dispatch keys are not a dense backend's); the
    // metadata copy below is what set_data does once its check passes.
    if (p.is_meta()) p.unsafeGetTensorImpl()->shallow_copy_from(value.getIntrusivePtr());
    else p.set_data(value);
}

int64_t ModelSession::vocab_size() const { return mvt_->vocab_size ? mvt_->vocab_size(model_handle_) : 0; }

bool ModelSession::base_weights_released() const {
    for (const auto& [_, p] : model_parameters())
        if (p.numel() == 0) return true;
    return false;
}

}  // namespace fthost::host
