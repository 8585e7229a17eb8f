// hf_files.hpp — the files of a Hugging Face checkpoint directory: config.json plus the
// weights in model.safetensors or in shards listed by model.safetensors.index.json,
// read and written as transformers' save_pretrained lays them out.
#pragma once

#include "io/safetensors.hpp"

#include <nlohmann/json.hpp>

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

// Writes `tensors` as model.safetensors, or — above max_shard_bytes — as
// model-0000K-of-0000N.safetensors shards plus model.safetensors.index.json, the layout
// transformers' save_pretrained writes (tensors in name order, metadata format "pt").
void save_hf_tensors(const std::filesystem::path& dir, const TensorList& tensors, uint64_t max_shard_bytes);

// transformers' default shard size (5 GB), which save_hf_tensors is given by default.
constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ull;

// A JSON file, or an error naming it.
nlohmann::json read_json_file(const std::filesystem::path& p);

}  // namespace fthost::host
