#include "io/hf_files.hpp"

#include "io/atomic_file.hpp"
#include "io/utf8.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>

namespace fs = std::filesystem;

namespace fthost::host {

nlohmann::json read_json_file(const fs::path& p) {
    try {
        return nlohmann::json::parse(read_text(p));
    } catch (const nlohmann::json::exception& e) {
        throw Error(p.string() + ": not valid JSON (" + utf8_lossy(e.what()) + ")", FT_ERR_INVALID_ARGUMENT);
    }
}

bool is_hf_checkpoint(const fs::path& dir) {
    return fs::exists(dir / "config.json") &&
           (fs::exists(dir / "model.safetensors") || fs::exists(dir / "model.safetensors.index.json"));
}

std::map<std::string, at::Tensor> load_hf_tensors(const fs::path& dir) {
    const fs::path index = dir / "model.safetensors.index.json";
    if (!fs::exists(index)) return load_safetensors((dir / "model.safetensors").string());
    const nlohmann::json j = read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
        throw Error(index.string() + ": no weight_map object", FT_ERR_INVALID_ARGUMENT);
    std::map<std::string, std::vector<std::string>> by_file;  // shard -> tensor names it should hold
    for (const auto& [name, file] : j["weight_map"].items()) {
        if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
            throw Error(index.string() + ": weight_map['" + name + "'] is not a file name in the directory",
                        FT_ERR_INVALID_ARGUMENT);
        by_file[file.get<std::string>()].push_back(name);
    }
    std::map<std::string, at::Tensor> all;
    for (const auto& [file, names] : by_file) {
        const fs::path shard = dir / file;
        if (!fs::exists(shard)) throw Error(index.string() + " names shard " + file + ", which is missing", FT_ERR_INVALID_ARGUMENT);
        auto tensors = load_safetensors(shard.string());
        for (const auto& name : names) {
            auto it = tensors.find(name);
            if (it == tensors.end())
                throw Error(shard.string() + ": has no tensor '" + name + "' (the index says it is there)",
                            FT_ERR_INVALID_ARGUMENT);
            all.emplace(name, it->second);
        }
        for (const auto& [name, _] : tensors)
            if (!all.count(name))
                throw Error(shard.string() + ": tensor '" + name + "' is not in the index's weight_map",
                            FT_ERR_INVALID_ARGUMENT);
    }
    return all;
}

void save_hf_tensors(const fs::path& dir, const TensorList& tensors, uint64_t max_shard_bytes) {
    TensorList sorted = tensors;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const std::map<std::string, std::string> pt = {{"format", "pt"}};
    std::vector<TensorList> shards(1);
    uint64_t in_shard = 0, total = 0;
    for (const auto& nt : sorted) {
        const uint64_t bytes = static_cast<uint64_t>(nt.second.numel()) * nt.second.element_size();
        if (in_shard > 0 && in_shard + bytes > max_shard_bytes) shards.emplace_back(), in_shard = 0;
        shards.back().push_back(nt);
        in_shard += bytes;
        total += bytes;
    }
    if (shards.size() == 1) {
        save_safetensors((dir / "model.safetensors").string(), sorted, pt);
        return;
    }
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
        char name[64];
        std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        save_safetensors((dir / name).string(), shards[i], pt);
        for (const auto& [tensor, _] : shards[i]) weight_map[tensor] = name;
    }
    const nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_text_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

}  // namespace fthost::host
