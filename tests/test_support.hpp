// test_support.hpp — shared fixtures: the plugin registry of this build, temporary
// directories, plugin sections from TOML snippets, and a tiny decoder.
#pragma once

#include "test_paths.hpp"
#include "config/run_config.hpp"
#include "data/batch_stream.hpp"
#include "data/example.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "registry/plugin_registry.hpp"
#include "config/host_api.hpp"
#include "model/model_session.hpp"

#include <fthost/plugin.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <unistd.h>

namespace fthost::test {

namespace fs = std::filesystem;
using namespace fthost::host;
using fthost::Error;

inline const PluginRegistry& registry() {
    static PluginRegistry reg = [] {
        PluginRegistry r;
        r.print_refusals = false;
        r.load_directory(plugin_dir());
        return r;
    }();
    return reg;
}

// A fresh, empty directory for one test, removed when the test process exits.
inline fs::path temp_dir(const std::string& name) {
    struct Cleanup {
        std::vector<fs::path> dirs;
        ~Cleanup() {
            std::error_code ec;
            for (const auto& d : dirs) fs::remove_all(d, ec);
        }
    };
    static Cleanup cleanup;
    fs::path p = fs::temp_directory_path() / ("fthost-test-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    cleanup.dirs.push_back(p);
    return p;
}

inline void write_file(const fs::path& p, const std::string& text) {
    std::ofstream out(p);
    out << text;
}

// A plugin's section from TOML key = value lines, validated like a config file's.
inline PluginSection plugin(ft_kind kind, const std::string& name, const std::string& toml_body = "") {
    PluginSection ps;
    ps.plugin = name;
    ps.loaded = &registry().require(kind, name);
    auto table = toml::parse(toml_body);
    Diagnostics diag;
    ps.config = validate_section(&table, "<test>", name, ps.loaded->desc->options, ps.loaded->desc->option_count, diag);
    EXPECT_TRUE(diag.ok()) << (diag.errors.empty() ? "" : diag.errors[0]);
    return ps;
}

inline const char* kTinyDecoder =
    "vocab_size = 260\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n"
    "num_attention_heads = 4\nnum_key_value_heads = 2\n";

inline std::unique_ptr<ModelSession> tiny_model(uint64_t seed = 7, at::Device device = at::Device(at::kCPU)) {
    at::manual_seed(seed);
    return std::make_unique<ModelSession>(plugin(FT_KIND_MODEL, "decoder", kTinyDecoder), registry(), device);
}

// A nested JSON array of numbers (a fixture) as a tensor of that shape.
inline at::Tensor tensor_from_json(const nlohmann::json& j, at::ScalarType type = at::kDouble) {
    std::vector<double> flat;
    std::vector<int64_t> shape;
    std::function<void(const nlohmann::json&, size_t)> walk = [&](const nlohmann::json& x, size_t depth) {
        if (x.is_array()) {
            if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(x.size()));
            for (const auto& e : x) walk(e, depth + 1);
        } else {
            flat.push_back(x.get<double>());
        }
    };
    walk(j, 0);
    return at::tensor(flat, at::kDouble).view(shape).to(type);
}

// The label ids of an example, without the ignored (-100) positions.
inline std::vector<int64_t> labelled(const Example& ex) {
    std::vector<int64_t> out;
    for (int64_t l : ex.labels)
        if (l != -100) out.push_back(l);
    return out;
}

inline Example text_example(const std::string& text) {
    return make_example(nlohmann::json{{"text", text}}, *TextCodec::bytes(), FT_LABELS_ALL, 256);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Compares t.grad() (already computed from loss()) with central differences of loss()
// at the given flat indices; returns how many elements were checked.
inline int expect_grad_matches_finite_differences(const at::Tensor& t, const std::function<at::Tensor()>& loss,
                                                  const std::vector<int64_t>& indices, double atol, double rtol,
                                                  const std::string& label, double h = 1e-6) {
    at::Tensor flat = t.detach().view(-1), grad = t.grad().view(-1);
    int checked = 0;
    for (int64_t i : indices) {
        at::NoGradGuard ng;
        const double orig = flat[i].item<double>();
        flat[i].fill_(orig + h);
        const double up = loss().item<double>();
        flat[i].fill_(orig - h);
        const double down = loss().item<double>();
        flat[i].fill_(orig);
        const double numeric = (up - down) / (2 * h);
        EXPECT_NEAR(grad[i].item<double>(), numeric, atol + rtol * std::abs(numeric)) << label << "[" << i << "]";
        ++checked;
    }
    return checked;
}

}  // namespace fthost::test
