// model_session.hpp — one model instance with its parameterisation, built from plugins:
// the host's handle for forward passes, token log-probs, weights in and out.
#pragma once

#include "checkpoint/hf_checkpoint.hpp"
#include "config/run_config.hpp"
#include "data/batch_stream.hpp"
#include "io/safetensors.hpp"
#include "model/chunked_logprobs.hpp"
#include "registry/plugin_registry.hpp"

#include <fthost/fthost.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <string>

namespace fthost::host {

nlohmann::json section_to_json(const Section& s);
// With `plugin`, validated against its options: missing keys take their defaults (a
// directory written before the plugin gained an option still loads).
Section section_from_json(const nlohmann::json& j, const std::string& path, const LoadedPlugin* plugin = nullptr);

// The dtype of the weights a model is loaded with: the one its plugin created each
// parameter in (float32: what numerical checks and exports compare), or the one the
// checkpoint stores (a bf16 base stays bf16 where the model keeps stored dtypes, ABI 1.8):
// what a training stage's starting model and a teacher use.
enum class WeightDtypes { as_created, as_stored };

// Where a loaded checkpoint's tensors go: all onto the model's device, or the linear
// sites' weights left in host memory (memory-mapped) for a parameterisation that takes
// its base there and moves what it keeps itself (ABI 1.9 takes_base_on_host: qlora
// quantises on the way, so an accelerator never holds the full-precision base).
enum class BasePlacement { on_device, sites_on_host };

// Whether `param` (a loaded param plugin) takes its base in host memory.
bool takes_base_on_host(const PluginSection& param);

// The named output a model adds to the training loss (fthost.h, ft_model_output).
inline constexpr const char* kAuxiliaryLoss = "auxiliary_loss";

// Hands each parameter of `into` its tensor of the same name to `put`; a missing,
// misshapen or unexpected tensor is an error naming `from`. Without gradients.
void put_tensors(std::map<std::string, at::Tensor>& tensors, const TensorList& into, const std::string& from,
                 const std::function<void(at::Tensor& param, at::Tensor& value)>& put);

// Puts `value` in the place of parameter `p` — its storage, device and dtype — keeping p's
// identity (every handle the plugin holds, requires_grad). p may be on the meta device.
void adopt_parameter(at::Tensor& p, const at::Tensor& value);

class ModelSession {
public:
    // A fresh model from its plugin (random init from the current seed). With
    // loading_weights the plugin is told that every parameter is replaced next
    // (ft_host_api.loading_weights): it may make them on the meta device, and they stay
    // off the run's device until loaded.
    ModelSession(const PluginSection& model, const PluginRegistry& registry, at::Device device,
                 bool loading_weights = false);
    // The model saved in a stage's final/ directory — or a Hugging Face checkpoint
    // directory (config.json + safetensors) — with any adapter merged in (or, with
    // merge_adapter = false, installed on top as it was trained).
    static std::unique_ptr<ModelSession> from_stage_dir(const std::filesystem::path& final_dir,
                                                        const PluginRegistry& registry, at::Device device,
                                                        bool merge_adapter = true,
                                                        WeightDtypes dtypes = WeightDtypes::as_created,
                                                        BasePlacement placement = BasePlacement::on_device);
    ~ModelSession();
    ModelSession(const ModelSession&) = delete;
    ModelSession& operator=(const ModelSession&) = delete;

    // Activation checkpointing in the model's forward passes with gradients; an error
    // naming the plugin when it does not support it.
    void set_activation_checkpointing(bool on);
    // Installs a parameterisation (lora, full, ...) on the model; one that takes its base
    // in host memory (BasePlacement::sites_on_host) has what it left there moved to the
    // model's device after.
    void apply_param(const PluginSection& param);
    // Folds the parameterisation into the base weights and removes it.
    void merge_param();

    at::Tensor hidden_states(HostBatch& batch);

    // What the model reads and how its labels line up (ABI 1.6; older tables: text, next).
    const ModelTraits& traits() const { return traits_; }
    bool reads_text() const { return (traits_.inputs & FT_INPUT_TEXT) != 0; }
    bool has_lm_head() const { return mvt_->lm_head != nullptr; }
    // An encoder-decoder's decoder start token (FT_INPUT_SOURCE); -1 for other models.
    int64_t decoder_start_id() const;
    // The model's encode_row over one dataset row (FT_INPUT_FIELDS); the row's errors as
    // exceptions naming the plugin.
    EncodedFields encode_row(const std::string& row_json, ft_label_policy policy, int64_t max_steps);
    // The named outputs of a forward over `batch` (ft_model_output.add_output), with
    // gradients unless adapters_off (the reference of adapter stages).
    std::map<std::string, at::Tensor> model_outputs(const ft_batch& batch, bool adapters_off = false);

    // Incremental decoding, when the model plugin offers it (ABI 1.1 forward_cached).
    bool supports_kv_cache() const;
    // A cache for one batch of rows; freed with the returned handle.
    std::shared_ptr<ft_kv_cache> new_kv_cache();
    // Sizes a new cache for `tokens` tokens per row (ABI 1.5 cache_reserve). True when
    // the plugin did: its decode steps may then be captured in a CUDA graph; false when
    // it predates 1.5 or offers no fixed-size cache (the cache then grows as needed).
    bool reserve_kv_cache(ft_kv_cache* cache, int64_t tokens);
    // Whether the plugin can reorder a prefilled cache's rows (ABI 1.6 cache_select_rows),
    // and doing it: row i becomes old row rows[i].
    bool can_select_kv_cache_rows() const;
    void select_kv_cache_rows(ft_kv_cache* cache, const at::Tensor& rows);
    // Appends `batch`'s tokens to the cache; hidden states of those tokens.
    at::Tensor hidden_states_cached(ft_kv_cache* cache, HostBatch& batch);
    at::Tensor logits(const at::Tensor& hidden);
    // log p(labels[t] | tokens < t) as [B, T] float32 (0 where ignored), under
    // softmax(logits / temperature); computed over the labelled positions only, in
    // chunks against the LM head (chunked_logprobs.hpp): no [tokens x vocab] tensor.
    // adapters_off = true: as the base model (the reference of adapter stages), no grad.
    at::Tensor token_logprobs(const ft_batch& batch, bool adapters_off, double temperature = 1.0);
    // Next-token logits at every labelled position: [N, V] float32 (ft_host_api's
    // run_label_logits).
    at::Tensor label_logits(const ft_batch& batch, bool adapters_off = false);
    // A second instance of this model with its current weights, frozen (no gradients,
    // eval mode): the reference of full fine-tuning.
    std::unique_ptr<ModelSession> frozen_copy() const;
    // Freezes every weight and switches to eval mode (references and teachers).
    void freeze();

    // The TensorImpls of the linear sites' weights (to tell them among the parameters).
    std::set<const void*> site_weights() const;
    TensorList model_parameters() const;
    TensorList trainable_parameters() const;
    bool is_full() const;
    void set_training(bool on);
    void set_adapters_enabled(bool on);
    // Copies tensors into the named parameters; missing or unexpected names are errors.
    void load_parameters(std::map<std::string, at::Tensor> tensors, const TensorList& into, const std::string& from);

    // Writes final/: stage.json plus model.safetensors (full) or, for adapters, PEFT's
    // adapter_model.safetensors + adapter_config.json and a pointer to the base stage
    // directory.
    void save_final(const std::filesystem::path& dir, const std::filesystem::path& base_dir) const;
    // Writes the model's own weights as a stage directory of no parameterisation
    // (stage.json + model.safetensors): what `fthost merge` leaves after merge_param().
    // A model that came from a Hugging Face checkpoint is written in its layout too:
    // its config.json, each tensor in the dtype it was read in, sharded above
    // max_shard_bytes — so vLLM or transformers load the directory as it is. With
    // `dtype`, every floating-point tensor is written in it instead, straight from the
    // in-memory weights (`fthost merge --dtype fp32`), and config.json says so.
    void save_model(const std::filesystem::path& dir, uint64_t max_shard_bytes = kDefaultMaxShardBytes,
                    std::optional<at::ScalarType> dtype = std::nullopt) const;
    // True when a parameterisation released base weights it holds in another form
    // (qlora's NF4): the model's own tensors can then not be saved as they are.
    bool base_weights_released() const;

    int64_t vocab_size() const;
    at::Device device() const { return device_; }
    // The sum of the "auxiliary_loss" outputs (fthost.h) of the forwards with gradients
    // since the last call (undefined when none gave one), and a fresh start.
    at::Tensor take_auxiliary_loss() { return std::exchange(auxiliary_, at::Tensor()); }
    const PluginSection& model_section() const { return model_; }

private:
    // The plugin's lm_head as the chunked log-prob function calls it (it outlives every
    // graph built from it).
    LmHead head_ = [this](const at::Tensor& h) { return logits(h); };
    PluginSection model_, param_;
    const ft_model_vtable* mvt_ = nullptr;
    ft_model* model_handle_ = nullptr;
    const ft_param_vtable* pvt_ = nullptr;
    ft_param* param_handle_ = nullptr;
    at::Device device_;
    const PluginRegistry* registry_ = nullptr;

    ModelTraits traits_;
    // The model's forward; with `outputs`, its named outputs too. adapters_off: as the base model.
    at::Tensor forward_checked(const ft_batch& batch, bool adapters_off = false,
                               std::map<std::string, at::Tensor>* outputs = nullptr);
    // The hidden states that predict each label, row-major over labels != -100 ([N, H]),
    // and those labels ([N]), as the model's label alignment says.
    std::pair<at::Tensor, at::Tensor> labelled_states(const at::Tensor& hidden, const at::Tensor& labels) const;
    // Puts the checkpoint's tensors in the model's parameters, on the model's device, in
    // the dtype `dtypes` says, remembering the dtype each was read in. A tensor already
    // on the device in that dtype is taken as it is: a memory-mapped file's pages.
    // With BasePlacement::sites_on_host the linear sites' weights stay in host memory.
    void load_weights(const std::filesystem::path& dir, WeightDtypes dtypes, BasePlacement placement);
    void load_weights(const std::filesystem::path& dir, std::map<std::string, at::Tensor> tensors, WeightDtypes dtypes,
                      BasePlacement placement);

    bool keeps_stored_dtypes() const;
    // Takes the tensors the model's hf_extra_tensors names out of `tensors`: kept to be
    // written back (carried_) or remembered as another name of a parameter (aliases_).
    void set_aside_extra_tensors(std::map<std::string, at::Tensor>& tensors, const std::string& from);
    // `params` and the checkpoint's extra tensors, as save writes them.
    TensorList with_extra_tensors(TensorList params) const;

    at::Tensor auxiliary_;   // see take_auxiliary_loss
    std::string hf_config_;  // config.json of the Hugging Face checkpoint the weights came from ("" = none)
    std::map<std::string, at::ScalarType> stored_dtypes_;  // tensor -> dtype in the file it was read from
    std::map<std::string, at::Tensor> carried_;           // unused tensors of the checkpoint, as read
    std::map<std::string, std::string> aliases_;          // checkpoint name -> the parameter it copies
};

}  // namespace fthost::host
