// hf_checkpoint.hpp — Hugging Face checkpoint directories: config.json plus the weights in
// model.safetensors or in shards listed by model.safetensors.index.json.
//
// Reading: the model plugin whose hf_architectures names config.json's architecture
// translates config.json into its options (ABI 1.3); the host validates them like any
// config section (defaults filled), creates the model and loads every tensor by name.
// Writing: the same layout, one file or shards of at most max_shard_bytes with an index.
#pragma once

#include "config/run_config.hpp"
#include "io/safetensors.hpp"
#include "registry/plugin_registry.hpp"

#include <filesystem>
#include <map>
#include <string>

namespace fthost::host {

// config.json and model.safetensors (or its index) are there.
bool is_hf_checkpoint(const std::filesystem::path& dir);

// Every tensor of the checkpoint by name, from one file or all the shards of the index
// (a shard the index names but that is missing, or a tensor in the wrong shard, is an
// error naming it).
std::map<std::string, at::Tensor> load_hf_tensors(const std::filesystem::path& dir);

// The model plugin and its validated options for the checkpoint's config.json.
PluginSection hf_model_section(const std::filesystem::path& dir, const PluginRegistry& registry);

// Writes `tensors` as model.safetensors, or — above max_shard_bytes — as
// model-0000K-of-0000N.safetensors shards plus model.safetensors.index.json, the layout
// transformers' save_pretrained writes (tensors in name order, metadata format "pt").
void save_hf_tensors(const std::filesystem::path& dir, const TensorList& tensors, uint64_t max_shard_bytes);

// transformers' default shard size (5 GB), which save_hf_tensors is given by default.
constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ull;

}  // namespace fthost::host
