#include "train/model_session.hpp"

#include "config/json_section.hpp"

#include "checkpoint/hf_checkpoint.hpp"
#include "io/atomic_file.hpp"
#include "run/host_api.hpp"

#include <fthost/torch.hpp>

#include <cstddef>
#include <fstream>

namespace fs = std::filesystem;

namespace fthost::host {

ft_batch as_ft_batch(HostBatch& b, int64_t num_items_in_batch, int64_t num_examples_in_batch) {
    ft_batch fb{};
    fb.struct_size = sizeof(ft_batch);
    fb.input_ids = reinterpret_cast<ft_tensor>(&b.input_ids);
    fb.labels = reinterpret_cast<ft_tensor>(&b.labels);
    fb.position_ids = reinterpret_cast<ft_tensor>(&b.position_ids);
    fb.sequence_ids = reinterpret_cast<ft_tensor>(&b.sequence_ids);
    fb.num_items_in_batch = num_items_in_batch;
    fb.num_examples_in_batch = num_examples_in_batch > 0 ? num_examples_in_batch : b.num_examples;
    b.named_extras.clear();
    if (b.completion_mask.defined())
        b.named_extras.push_back({"completion_mask", reinterpret_cast<ft_tensor>(&b.completion_mask)});
    if (b.desirable.defined()) b.named_extras.push_back({"desirable", reinterpret_cast<ft_tensor>(&b.desirable)});
    for (auto& [name, t] : b.extras) b.named_extras.push_back({name.c_str(), reinterpret_cast<ft_tensor>(&t)});
    fb.extras = b.named_extras.data();
    fb.extra_count = static_cast<uint32_t>(b.named_extras.size());
    return fb;
}

nlohmann::json section_to_json(const Section& s) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [k, v] : s.values) std::visit([&](const auto& x) { j[k] = x; }, v);
    return j;
}

Section section_from_json(const nlohmann::json& j, const std::string& path, const LoadedPlugin* plugin) {
    // Checked against the plugin's options as a config section is, so that keys the
    // plugin gained after the directory was written take their defaults.
    if (plugin) return validate_json_section(j, path, path, *plugin);
    Section s;
    s.path = path;
    s.section_where = path;
    for (const auto& [k, v] : j.items()) {
        if (v.is_boolean()) s.values[k] = v.get<bool>();
        else if (v.is_number_integer()) s.values[k] = v.get<int64_t>();
        else if (v.is_number()) s.values[k] = v.get<double>();
        else if (v.is_string()) s.values[k] = v.get<std::string>();
        else if (v.is_array()) s.values[k] = v.get<std::vector<std::string>>();
    }
    return s;
}

static TensorList collect(const std::function<ft_status(ft_tensor_visitor, void*, ft_error*)>& call) {
    TensorList out;
    ft_error err{};
    check(call([](void* u, const char* n, ft_tensor t) { static_cast<TensorList*>(u)->emplace_back(n, borrow(t)); },
               &out, &err),
          err);
    return out;
}

ModelSession::ModelSession(const PluginSection& model, const PluginRegistry& registry, at::Device device)
    : model_(model), device_(device), registry_(&registry) {
    if (!model_.loaded) model_.loaded = &registry.require(FT_KIND_MODEL, model_.plugin);
    mvt_ = static_cast<const ft_model_vtable*>(model_.loaded->desc->vtable);
    ft_error err{};
    check(mvt_->create(host_api(), &model_.config, &model_handle_, &err), err);
    if (device_ != at::kCPU) {
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
    check(pvt_->create(host_api(), &param_.config, mvt_, model_handle_, &param_handle_, &err), err);
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
    ft_model_output out{sizeof(ft_model_output), nullptr};
    ft_error err{};
    check(mvt_->forward(model_handle_, &fb, &out, &err), err);
    return take(out.hidden_states);
}

bool ModelSession::supports_kv_cache() const {
    return mvt_->struct_size >= offsetof(ft_model_vtable, forward_cached) + sizeof(mvt_->forward_cached) &&
           mvt_->cache_create && mvt_->cache_destroy && mvt_->forward_cached;
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
    if (mvt_->struct_size < offsetof(ft_model_vtable, cache_reserve) + sizeof(mvt_->cache_reserve) ||
        !mvt_->cache_reserve)
        return false;
    ft_error err{};
    check(mvt_->cache_reserve(model_handle_, cache, tokens, &err), err);
    return true;
}

at::Tensor ModelSession::hidden_states_cached(ft_kv_cache* cache, HostBatch& batch) {
    ft_batch fb = as_ft_batch(batch, batch.num_labels);
    ft_model_output out{sizeof(ft_model_output), nullptr};
    ft_error err{};
    check(mvt_->forward_cached(model_handle_, cache, &fb, &out, &err), err);
    return take(out.hidden_states);
}

void ModelSession::set_activation_checkpointing(bool on) {
    if (mvt_->struct_size < offsetof(ft_model_vtable, set_activation_checkpointing) + sizeof(void*) ||
        !mvt_->set_activation_checkpointing) {
        if (!on) return;
        throw Error("model plugin '" + model_.plugin + "' does not support activation checkpointing "
                    "(set [stage.train] activation_checkpointing = false)", FT_ERR_UNSUPPORTED);
    }
    mvt_->set_activation_checkpointing(model_handle_, on ? 1 : 0);
}

at::Tensor ModelSession::logits(const at::Tensor& hidden) {
    ft_tensor out = nullptr;
    ft_error err{};
    check(mvt_->lm_head(model_handle_, reinterpret_cast<ft_tensor>(const_cast<at::Tensor*>(&hidden)), &out, &err), err);
    return take(out);
}

ft_model_output ModelSession::forward_checked(const ft_batch& batch) {
    ft_model_output out{sizeof(ft_model_output), nullptr};
    ft_error err{};
    check(mvt_->forward(model_handle_, &batch, &out, &err), err);
    return out;
}

at::Tensor ModelSession::token_logprobs(const ft_batch& batch, bool adapters_off, double temperature) {
    std::optional<at::NoGradGuard> ng;
    if (adapters_off) {
        if (param_handle_ && is_full())
            throw Error("full fine-tuning has no adapters to switch off: its reference is a frozen copy");
        ng.emplace();
        set_adapters_enabled(false);
    }
    ft_model_output out{};
    try {
        out = forward_checked(batch);
    } catch (...) {
        if (adapters_off) set_adapters_enabled(true);
        throw;
    }
    if (adapters_off) set_adapters_enabled(true);
    at::Tensor hidden = take(out.hidden_states);
    const at::Tensor& labels = borrow(batch.labels);
    const int64_t T = labels.size(1), H = hidden.size(-1);
    // Position t-1 predicts label t; only labelled positions go through the LM head
    // (SFT skips its prompts), a chunk at a time, gather - logsumexp in (at least) fp32.
    const at::Tensor target = labels.narrow(1, 1, T - 1);
    const at::Tensor mask = target.ne(-100);
    const at::Tensor h = hidden.narrow(1, 0, T - 1).masked_select(mask.unsqueeze(-1)).view({-1, H});
    const at::Tensor lp =
        chunked_token_logprobs(head_, h, target.masked_select(mask), temperature, logprob_chunk_rows(vocab_size()));
    return at::constant_pad_nd(at::zeros(target.sizes(), lp.options()).masked_scatter(mask, lp), {1, 0}, 0.0);
}

at::Tensor ModelSession::label_logits(const ft_batch& batch, bool adapters_off) {
    std::optional<at::NoGradGuard> ng;
    if (adapters_off) {
        ng.emplace();
        set_adapters_enabled(false);
    }
    at::Tensor hidden;
    try {
        hidden = take(forward_checked(batch).hidden_states);
    } catch (...) {
        if (adapters_off) set_adapters_enabled(true);
        throw;
    }
    if (adapters_off) set_adapters_enabled(true);
    const at::Tensor& labels = borrow(batch.labels);
    const int64_t T = labels.size(1);
    // Row-major over (b, t): the prediction at t-1 for each label at t != -100.
    const at::Tensor mask = labels.narrow(1, 1, T - 1).ne(-100);
    const int64_t H = hidden.size(-1);
    at::Tensor picked = hidden.narrow(1, 0, T - 1).masked_select(mask.unsqueeze(-1)).view({-1, H});
    at::Tensor logits = this->logits(picked);
    return logits.to(at::promote_types(logits.scalar_type(), at::kFloat));
}

std::unique_ptr<ModelSession> ModelSession::frozen_copy() const {
    if (!registry_) throw Error("frozen_copy: this model was not made from a plugin registry");
    auto copy = std::make_unique<ModelSession>(model_, *registry_, device_);
    at::NoGradGuard ng;
    const TensorList src = model_parameters(), dst = copy->model_parameters();
    for (size_t i = 0; i < src.size(); ++i) dst[i].second.copy_(src[i].second);
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

void ModelSession::load_parameters(const std::map<std::string, at::Tensor>& tensors, const TensorList& into,
                                   const std::string& from) {
    at::NoGradGuard ng;
    std::set<std::string> used;
    for (const auto& [name, p] : into) {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw Error(from + ": missing tensor '" + name + "'");
        if (it->second.sizes() != p.sizes())
            throw Error(from + ": tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", the model expects " +
                        c10::str(p.sizes()));
        p.copy_(it->second);
        used.insert(name);
    }
    for (const auto& [name, _] : tensors)
        if (!used.count(name)) throw Error(from + ": unexpected tensor '" + name + "'");
}

int64_t ModelSession::vocab_size() const { return mvt_->vocab_size(model_handle_); }

bool ModelSession::base_weights_released() const {
    for (const auto& [_, p] : model_parameters())
        if (p.numel() == 0) return true;
    return false;
}

// safetensors metadata transformers and PEFT expect on PyTorch files.
static const std::map<std::string, std::string> kPtFormat = {{"format", "pt"}};

void ModelSession::save_final(const fs::path& dir, const fs::path& base_dir) const {
    nlohmann::json stage = {{"format", "fthost-stage-1"},
                            {"model_plugin", model_.plugin},
                            {"model_config", section_to_json(model_.config)}};
    const bool adapter = param_handle_ && !is_full();
    if (adapter) {
        stage["param_plugin"] = param_.plugin;
        stage["param_config"] = section_to_json(param_.config);
        save_safetensors((dir / "adapter_model.safetensors").string(), trainable_parameters(), kPtFormat);
        if (pvt_->struct_size >= offsetof(ft_param_vtable, peft_config) + sizeof(void*) && pvt_->peft_config) {
            std::string text;
            ft_error err{};
            check(pvt_->peft_config(
                      param_handle_, [](void* u, const char* j) { *static_cast<std::string*>(u) = j; }, &text, &err),
                  err);
            nlohmann::json cfg = nlohmann::json::parse(text);
            if (!base_dir.empty()) cfg["base_model_name_or_path"] = fs::weakly_canonical(fs::absolute(base_dir)).string();
            write_text_atomically(dir / "adapter_config.json", cfg.dump(2) + "\n");
        }
    }
    // Base weights: the earlier stage's directory when an adapter sits on top of it,
    // else the model's own weights (unmerged, so the adapter stays separate).
    if (adapter && !base_dir.empty()) {
        stage["base"] = fs::relative(fs::absolute(base_dir), fs::absolute(dir)).string();
    } else {
        if (base_weights_released())
            throw Error("the '" + param_.plugin + "' parameterisation holds the base weights in another form; "
                        "its stage needs init_from so that the base can be read from there");
        // Trained weights stay in their training dtype; a Hugging Face base's config.json
        // comes along, so the directory is a checkpoint transformers and vLLM read.
        save_hf_tensors(dir, model_parameters(), kDefaultMaxShardBytes);
        if (!hf_config_.empty()) write_text_atomically(dir / "config.json", hf_config_);
    }
    write_text_atomically(dir / "stage.json", stage.dump(2) + "\n");
}

void ModelSession::save_model(const fs::path& dir, uint64_t max_shard_bytes) const {
    if (param_handle_) throw Error("save_model: merge the parameterisation first");
    const nlohmann::json stage = {{"format", "fthost-stage-1"},
                                  {"model_plugin", model_.plugin},
                                  {"model_config", section_to_json(model_.config)}};
    if (hf_config_.empty()) {
        save_safetensors((dir / "model.safetensors").string(), model_parameters(), kPtFormat);
    } else {
        TensorList tensors;
        for (const auto& [name, t] : model_parameters()) {
            auto it = stored_dtypes_.find(name);
            tensors.emplace_back(name, it == stored_dtypes_.end() ? t : t.to(it->second));
        }
        save_hf_tensors(dir, tensors, max_shard_bytes);
        write_text_atomically(dir / "config.json", hf_config_);
    }
    write_text_atomically(dir / "stage.json", stage.dump(2) + "\n");
}

void ModelSession::load_weights(const fs::path& dir) {
    const auto tensors = load_hf_tensors(dir);  // model.safetensors, or the shards of its index
    for (const auto& [name, t] : tensors) stored_dtypes_[name] = t.scalar_type();
    load_parameters(tensors, model_parameters(), dir.string());
    if (fs::exists(dir / "config.json")) hf_config_ = read_text(dir / "config.json");
}

std::unique_ptr<ModelSession> ModelSession::from_stage_dir(const fs::path& final_dir, const PluginRegistry& registry,
                                                           at::Device device, bool merge_adapter) {
    const fs::path sj = final_dir / "stage.json";
    if (!fs::exists(sj) && is_hf_checkpoint(final_dir)) {
        auto s = std::make_unique<ModelSession>(hf_model_section(final_dir, registry), registry, device);
        s->load_weights(final_dir);
        return s;
    }
    if (!fs::exists(sj))
        throw Error(final_dir.string() + " holds neither a stage (stage.json) nor a Hugging Face checkpoint "
                    "(config.json + model.safetensors)", FT_ERR_CONFIG);
    nlohmann::json stage;
    try {
        stage = nlohmann::json::parse(read_text(sj));
    } catch (const nlohmann::json::exception& e) {
        throw Error(sj.string() + ": " + e.what());
    }
    if (stage.value("format", "") != "fthost-stage-1") throw Error(sj.string() + ": not an fthost stage directory");
    std::unique_ptr<ModelSession> s;
    if (stage.contains("base")) {
        s = from_stage_dir(fs::weakly_canonical(final_dir / stage["base"].get<std::string>()), registry, device);
    } else {
        PluginSection m;
        m.plugin = stage["model_plugin"].get<std::string>();
        m.loaded = &registry.require(FT_KIND_MODEL, m.plugin);
        m.config = section_from_json(stage["model_config"], sj.string() + " model_config", m.loaded);
        s = std::make_unique<ModelSession>(m, registry, device);
        s->load_weights(final_dir);
    }
    if (stage.contains("param_plugin")) {
        PluginSection p;
        p.plugin = stage["param_plugin"].get<std::string>();
        p.loaded = &registry.require(FT_KIND_PARAM, p.plugin);
        p.config = section_from_json(stage["param_config"], sj.string() + " param_config", p.loaded);
        s->apply_param(p);
        // adapter.safetensors: the name run directories used before the PEFT layout.
        fs::path f = final_dir / "adapter_model.safetensors";
        if (!fs::exists(f) && fs::exists(final_dir / "adapter.safetensors")) f = final_dir / "adapter.safetensors";
        s->load_parameters(load_safetensors(f.string()), s->trainable_parameters(), f.string());
        if (merge_adapter) s->merge_param();
        else s->freeze();
    }
    return s;
}

}  // namespace fthost::host
