#include "generate/generate_command.hpp"

#include "data/example.hpp"
#include "data/jsonl_reader.hpp"
#include "io/atomic_file.hpp"
#include "generate/generator.hpp"
#include "model/device.hpp"

#include <fthost/plugin.hpp>

#include <ATen/Parallel.h>

#include <cstdio>
#include <limits>
#include <iostream>

namespace fthost::host {

int generate_command(const GenerateRequest& req, const PluginRegistry& registry) {
    if (req.input.empty() == req.prompts.empty())
        throw Error("give prompts with --input FILE.jsonl or with --prompt TEXT (one of the two)", FT_ERR_CONFIG);
    if (req.num_generations < 1) throw Error("--num-generations must be at least 1", FT_ERR_CONFIG);
    if (req.batch_size < 1) throw Error("--batch-size must be at least 1", FT_ERR_CONFIG);
    if (req.sampling.top_p <= 0 || req.sampling.top_p > 1) throw Error("--top-p must be in (0, 1]", FT_ERR_CONFIG);
    if (req.sampling.temperature < 0) throw Error("--temperature must be >= 0", FT_ERR_CONFIG);
    if (req.threads > 0) at::set_num_threads(static_cast<int>(req.threads));
    auto model = ModelSession::from_stage_dir(req.stage_dir, registry, resolve_device(req.device));
    const std::string who = req.stage_dir + ": model '" + model->model_section().plugin + "'";
    if (!model->reads_text() || !model->has_lm_head())
        throw Error(who + " reads or predicts no text: there is nothing to generate", FT_ERR_CONFIG);
    // A model that reads fields besides the text (an image) takes them from each row.
    const bool with_fields = (model->traits().inputs & FT_INPUT_FIELDS) != 0;
    if (with_fields && req.input.empty())
        throw Error(who + " reads fields besides the prompt (encode_row): give rows with --input FILE.jsonl", FT_ERR_CONFIG);
    const auto codec_ptr = TextCodec::for_model(req.stage_dir, req.chat_template);
    const TextCodec& codec = *codec_ptr;

    std::vector<nlohmann::json> rows;
    std::vector<std::vector<int64_t>> encoded;  // each row's prompt, encoded once
    std::vector<std::vector<Field>> row_fields;  // and its model fields
    if (!req.input.empty()) {
        read_jsonl(req.input, false, [&](const nlohmann::json& row, int64_t) {
            if (!row.contains("prompt")) throw std::runtime_error("a generation row needs 'prompt' (text or messages)");
            encoded.push_back(render_prompt(row["prompt"], codec));  // malformed prompts fail here, at their line
            row_fields.push_back(with_fields ? model->encode_row(row.dump(), FT_LABELS_COMPLETION,
                                                                 std::numeric_limits<int64_t>::max()).fields
                                             : std::vector<Field>{});
            rows.push_back(row);
        });
    } else {
        for (const auto& p : req.prompts) {
            rows.push_back({{"prompt", req.chat ? nlohmann::json::array({{{"role", "user"}, {"content", p}}})
                                                : nlohmann::json(p)}});
            encoded.push_back(render_prompt(rows.back()["prompt"], codec));
            row_fields.emplace_back();
        }
    }
    // An encoder-decoder reads the prompt as its source; its decoder starts from its start id.
    const int64_t start = model->decoder_start_id();
    if (start >= 0)
        for (size_t i = 0; i < encoded.size(); ++i) {
            auto src = source_fields(encoded[i]);
            row_fields[i].insert(row_fields[i].begin(), src.begin(), src.end());
            encoded[i] = {start};
        }
    std::vector<std::vector<int64_t>> prompts;
    std::vector<const std::vector<Field>*> fields;
    for (size_t i = 0; i < encoded.size(); ++i)
        for (int64_t g = 0; g < req.num_generations; ++g) {
            prompts.push_back(encoded[i]);
            fields.push_back(&row_fields[i]);
        }

    const SamplingOptions& o = req.sampling;  // stop ids and vocabulary limit: the codec's
    GenerationStats stats;
    const auto out = generate(*model, prompts, o, req.batch_size, codec, &stats, fields);

    std::string text;
    for (size_t i = 0; i < out.size(); ++i) {
        nlohmann::json row = rows[i / static_cast<size_t>(req.num_generations)];
        row["completion"] = out[i].text;
        row["finish_reason"] = out[i].finish_reason;
        row["completion_tokens"] = out[i].tokens.size();
        if (req.num_generations > 1) row["generation"] = i % static_cast<size_t>(req.num_generations);
        // Sampled bytes need not be valid UTF-8: invalid ones become U+FFFD in the JSON.
        text += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (req.output.empty()) std::cout << text;
    else write_text_atomically(req.output, text);
    char buf[200];
    std::snprintf(buf, sizeof buf, "fthost generate: %zu completions, %lld tokens in %.2f s (%.0f tokens/s)%s\n", out.size(),
                  static_cast<long long>(stats.tokens), stats.seconds, stats.seconds > 0 ? stats.tokens / stats.seconds : 0.0,
                  !(model->supports_kv_cache() && o.use_cache) ? ", no KV cache"
                  : stats.graph_replays > 0                   ? ", decode steps replayed from CUDA graphs"
                                                               : "");
    std::cerr << buf;
    return 0;
}

}  // namespace fthost::host
