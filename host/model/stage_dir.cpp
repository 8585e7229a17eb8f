// Stage directories and Hugging Face checkpoints in and out of a ModelSession: what
// final/ holds (stage.json, weights or a PEFT adapter over a base stage), and loading
// it back, base chain first.
#include "model/model_session.hpp"

#include "checkpoint/hf_checkpoint.hpp"
#include "config/json_section.hpp"
#include "io/atomic_file.hpp"

#include <fthost/torch.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <set>

namespace fs = std::filesystem;

namespace fthost::host {

nlohmann::json section_to_json(const Section& s) {
    nlohmann::json j = nlohmann::json::object();
    // (a lambda capturing a structured binding is C++20; clang 14 refuses it in C++17)
    for (const auto& kv : s.values) std::visit([&](const auto& x) { j[kv.first] = x; }, kv.second);
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
        if (FT_HAS_FIELD(pvt_, ft_param_vtable, peft_config) && pvt_->peft_config) {
            std::string text;
            ft_error err{};
            check(pvt_->peft_config(
                      param_handle_, [](void* u, const char* j) { *static_cast<std::string*>(u) = j; }, &text, &err),
                  err);
            nlohmann::json cfg = nlohmann::json::parse(text);
            if (!base_dir.empty()) cfg["base_model_name_or_path"] = fs::weakly_canonical(fs::absolute(base_dir)).string();
            // PEFT's task type is the model's, which a parameterisation cannot know: a text
            // model predicting next tokens is a CAUSAL_LM, an encoder-decoder over text a
            // SEQ_2_SEQ_LM; for any other PEFT's task-less form (null) loads the adapter
            // over the bare model.
            const bool lm = reads_text() && traits_.label_alignment == FT_LABEL_NEXT && has_lm_head();
            if (cfg.contains("task_type"))
                cfg["task_type"] = !lm ? nlohmann::json(nullptr)
                                   : (traits_.inputs & FT_INPUT_SOURCE) ? nlohmann::json("SEQ_2_SEQ_LM")
                                                                        : nlohmann::json("CAUSAL_LM");
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
        save_hf_tensors(dir, with_extra_tensors(model_parameters()), kDefaultMaxShardBytes);
        if (!hf_config_.empty()) write_text_atomically(dir / "config.json", hf_config_);
    }
    write_text_atomically(dir / "stage.json", stage.dump(2) + "\n");
}

// config.json with its dtype keys (transformers 5's `dtype`, 4's `torch_dtype`, in
// sub-configs too) naming `dtype`: loaders that follow it (dtype "auto") would otherwise
// narrow the tensors again.
static std::string config_with_dtype(const std::string& text, at::ScalarType dtype) {
    const std::map<at::ScalarType, std::string> names = {
        {at::kFloat, "float32"}, {at::kBFloat16, "bfloat16"}, {at::kHalf, "float16"}};
    if (!names.count(dtype)) throw Error(std::string("save_model: no config.json name for ") + c10::toString(dtype));
    nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(text);
    const std::function<void(nlohmann::ordered_json&)> rename = [&](nlohmann::ordered_json& j) {
        for (auto& [key, v] : j.items()) {
            if ((key == "dtype" || key == "torch_dtype") && v.is_string()) v = names.at(dtype);
            else if (v.is_object()) rename(v);
        }
    };
    rename(cfg);
    return cfg.dump(2) + "\n";
}

void ModelSession::save_model(const fs::path& dir, uint64_t max_shard_bytes,
                              std::optional<at::ScalarType> dtype) const {
    if (param_handle_) throw Error("save_model: merge the parameterisation first");
    const nlohmann::json stage = {{"format", "fthost-stage-1"},
                                  {"model_plugin", model_.plugin},
                                  {"model_config", section_to_json(model_.config)}};
    // Cast from the in-memory weights, never from a stored-dtype copy (fp32 stays exact).
    const auto in_dtype = [&](TensorList ts) {
        if (dtype)
            for (auto& [_, t] : ts)
                if (t.is_floating_point()) t = t.to(*dtype);
        return ts;
    };
    // Without `dtype`, each tensor goes back in the dtype it was read in (a bf16 base
    // merged stays bf16); a fresh model's in the one it has.
    TensorList tensors;
    for (const auto& [name, t] : model_parameters()) {
        auto it = stored_dtypes_.find(name);
        tensors.emplace_back(name, dtype || it == stored_dtypes_.end() ? t : t.to(it->second));
    }
    if (hf_config_.empty()) {
        save_safetensors((dir / "model.safetensors").string(), in_dtype(std::move(tensors)), kPtFormat);
    } else {
        save_hf_tensors(dir, in_dtype(with_extra_tensors(std::move(tensors))), max_shard_bytes);
        write_text_atomically(dir / "config.json", dtype ? config_with_dtype(hf_config_, *dtype) : hf_config_);
    }
    write_text_atomically(dir / "stage.json", stage.dump(2) + "\n");
}

void ModelSession::load_weights(const fs::path& dir, WeightDtypes dtypes, BasePlacement placement) {
    load_weights(dir, load_hf_tensors(dir), dtypes, placement);  // model.safetensors, or the shards of its index
}

void ModelSession::load_weights(const fs::path& dir, std::map<std::string, at::Tensor> tensors, WeightDtypes dtypes,
                                BasePlacement placement) {
    for (const auto& [name, t] : tensors) stored_dtypes_[name] = t.scalar_type();
    set_aside_extra_tensors(tensors, dir.string());
    const bool as_stored = dtypes == WeightDtypes::as_stored && keeps_stored_dtypes();
    const std::set<const void*> on_host =
        placement == BasePlacement::sites_on_host && device_ != at::kCPU ? site_weights() : std::set<const void*>{};
    put_tensors(tensors, model_parameters(), dir.string(), [&](at::Tensor& p, at::Tensor& t) {
        const at::ScalarType dtype = as_stored && t.is_floating_point() ? t.scalar_type() : p.scalar_type();
        // One tensor at a time onto the device; the map's entry is dropped once moved, so
        // that a tensor's file pages are released as soon as nothing else holds them.
        const bool host = on_host.count(p.unsafeGetTensorImpl()) != 0;
        adopt_parameter(p, t.to(host ? at::Device(at::kCPU) : device_, dtype));
        t = at::Tensor();
    });
    if (fs::exists(dir / "config.json")) hf_config_ = read_text(dir / "config.json");
}

void ModelSession::set_aside_extra_tensors(std::map<std::string, at::Tensor>& tensors, const std::string& from) {
    if (!FT_HAS_FIELD(mvt_, ft_model_vtable, hf_extra_tensors) || !mvt_->hf_extra_tensors) return;
    std::set<std::string> params;
    for (const auto& [name, _] : model_parameters()) params.insert(name);
    for (const char* const* e = mvt_->hf_extra_tensors; *e; ++e) {
        const std::string entry = *e;
        const size_t eq = entry.find('=');
        const std::string name = entry.substr(0, eq);
        auto it = tensors.find(name);
        if (it == tensors.end() || params.count(name)) continue;
        if (eq == std::string::npos) {
            carried_[name] = it->second;
        } else {
            const std::string param = entry.substr(eq + 1);
            if (!params.count(param))
                throw Error(from + ": tensor '" + name + "' is another name of '" + param + "', which model '" +
                            model_.plugin + "' does not have");
            aliases_[name] = param;
        }
        tensors.erase(it);
    }
}

TensorList ModelSession::with_extra_tensors(TensorList params) const {
    for (const auto& [name, t] : carried_) params.emplace_back(name, t);
    for (const auto& [name, param] : aliases_) {
        const std::string& target = param;  // (clang 14: a lambda cannot capture a structured binding in C++17)
        const auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.first == target; });
        if (it != params.end()) params.emplace_back(name, it->second);
    }
    return params;
}

std::unique_ptr<ModelSession> ModelSession::from_stage_dir(const fs::path& final_dir, const PluginRegistry& registry,
                                                           at::Device device, bool merge_adapter, WeightDtypes dtypes,
                                                           BasePlacement placement) {
    const fs::path sj = final_dir / "stage.json";
    if (!fs::exists(sj) && is_hf_checkpoint(final_dir)) {
        auto tensors = load_hf_tensors(final_dir);
        std::vector<std::string> names;
        for (const auto& [name, _] : tensors) names.push_back(name);
        auto s = std::make_unique<ModelSession>(hf_model_section(final_dir, names, registry), registry, device,
                                                /*loading_weights=*/true);
        s->load_weights(final_dir, std::move(tensors), dtypes, placement);
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
    std::optional<PluginSection> param;
    if (stage.contains("param_plugin")) {
        PluginSection p;
        p.plugin = stage["param_plugin"].get<std::string>();
        p.loaded = &registry.require(FT_KIND_PARAM, p.plugin);
        p.config = section_from_json(stage["param_config"], sj.string() + " param_config", p.loaded);
        // A qlora stage's own base goes to the device quantised, as it did in training.
        if (takes_base_on_host(p)) placement = BasePlacement::sites_on_host;
        param = std::move(p);
    }
    std::unique_ptr<ModelSession> s;
    if (stage.contains("base")) {
        s = from_stage_dir(fs::weakly_canonical(final_dir / stage["base"].get<std::string>()), registry, device, true,
                           dtypes, placement);
    } else {
        PluginSection m;
        m.plugin = stage["model_plugin"].get<std::string>();
        m.loaded = &registry.require(FT_KIND_MODEL, m.plugin);
        m.config = section_from_json(stage["model_config"], sj.string() + " model_config", m.loaded);
        s = std::make_unique<ModelSession>(m, registry, device, /*loading_weights=*/true);
        s->load_weights(final_dir, dtypes, placement);
    }
    if (param) {
        s->apply_param(*param);
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

