#include "export/verify_command.hpp"

#include "io/atomic_file.hpp"
#include "model/model_session.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace fs = std::filesystem;

namespace fthost::host {

VerifyResult verify_logits(const VerifyRequest& req, const PluginRegistry& registry) {
    nlohmann::json ref;
    try {
        ref = nlohmann::json::parse(read_text(req.reference));
    } catch (const nlohmann::json::exception& e) {
        throw Error(req.reference + ": not valid JSON (" + e.what() + ")", FT_ERR_INVALID_ARGUMENT);
    }
    if (!ref.contains("input_ids") || !ref.contains("logits"))
        throw Error(req.reference + ": needs \"input_ids\" ([[token, ...], ...]) and \"logits\" ([rows][tokens][vocab])",
                    FT_ERR_INVALID_ARGUMENT);
    const auto rows = [&](const char* key) {
        try {
            return ref[key].get<std::vector<std::vector<int64_t>>>();
        } catch (const nlohmann::json::exception&) {
            throw Error(req.reference + ": \"" + key + "\" must be rows of integers", FT_ERR_INVALID_ARGUMENT);
        }
    };
    const auto source = rows("input_ids");
    const auto want_all = ref["logits"].get<std::vector<std::vector<std::vector<double>>>>();
    const auto mask = ref.contains("attention_mask") ? rows("attention_mask") : std::vector<std::vector<int64_t>>{};
    const bool seq2seq = ref.contains("decoder_input_ids");
    // An encoder-decoder's logits are the decoder's: input_ids are the encoder's source.
    const auto ids = seq2seq ? rows("decoder_input_ids") : source;
    if (ids.empty() || ids.size() != want_all.size() || (seq2seq && source.size() != ids.size()))
        throw Error(req.reference + ": input_ids" + std::string(seq2seq ? ", decoder_input_ids" : "") +
                        " and logits must have the same, non-zero number of rows",
                    FT_ERR_INVALID_ARGUMENT);
    if (!mask.empty() && (mask.size() != source.size()))
        throw Error(req.reference + ": attention_mask must have a row per input_ids row", FT_ERR_INVALID_ARGUMENT);

    const at::Device device(req.device == "auto" ? (at::hasCUDA() ? "cuda" : "cpu") : req.device);
    auto model = ModelSession::from_stage_dir(fs::path(req.checkpoint), registry, device);
    const bool model_seq2seq = (model->traits().inputs & FT_INPUT_SOURCE) != 0;
    if (seq2seq != model_seq2seq)
        throw Error(req.reference + (model_seq2seq ? ": the model is an encoder-decoder; the reference needs "
                                                     "\"decoder_input_ids\" (input_ids are the encoder's source)"
                                                   : ": has \"decoder_input_ids\", but the model is not an "
                                                     "encoder-decoder"),
                    FT_ERR_INVALID_ARGUMENT);
    model->freeze();
    at::NoGradGuard ng;
    VerifyResult r;
    const auto check_ids = [&](const std::vector<int64_t>& row) {
        for (int64_t id : row)
            if (id < 0 || id >= model->vocab_size())
                throw Error(req.reference + ": token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                                std::to_string(model->vocab_size()),
                            FT_ERR_INVALID_ARGUMENT);
    };
    for (size_t row = 0; row < ids.size(); ++row) {  // one row at a time: rows may differ in length
        const int64_t T = static_cast<int64_t>(ids[row].size());
        check_ids(ids[row]);
        HostBatch b;
        b.input_ids = at::tensor(ids[row], at::kLong).view({1, T});
        b.labels = at::full({1, T}, -100, at::kLong);
        b.position_ids = at::arange(T, at::kLong).view({1, T});
        b.sequence_ids = at::zeros({1, T}, at::kLong);
        b.num_tokens = T;
        b.num_examples = 1;
        if (seq2seq) {
            check_ids(source[row]);
            const int64_t S = static_cast<int64_t>(source[row].size());
            std::vector<int64_t> m = mask.empty() ? std::vector<int64_t>(source[row].size(), 1) : mask[row];
            if (static_cast<int64_t>(m.size()) != S)
                throw Error(req.reference + ": attention_mask row " + std::to_string(row) + " has " +
                                std::to_string(m.size()) + " entries, input_ids " + std::to_string(S),
                            FT_ERR_INVALID_ARGUMENT);
            b.extras = {{"source_ids", at::tensor(source[row], at::kLong).view({1, S})},
                        {"source_mask", at::tensor(m, at::kLong).view({1, S})}};
        }
        b = to_device(std::move(b), device);
        const at::Tensor got = model->logits(model->hidden_states(b)).to(at::kCPU, at::kDouble).squeeze(0);
        const auto& want_rows = want_all[row];
        if (static_cast<int64_t>(want_rows.size()) != T)
            throw Error(req.reference + ": row " + std::to_string(row) + " has " + std::to_string(T) + " tokens but " +
                            std::to_string(want_rows.size()) + " rows of logits",
                        FT_ERR_INVALID_ARGUMENT);
        std::vector<double> flat;
        for (const auto& v : want_rows) {
            if (static_cast<int64_t>(v.size()) != got.size(1))
                throw Error(req.reference + ": reference logits have " + std::to_string(v.size()) +
                                " entries per token, the model's vocabulary is " + std::to_string(got.size(1)),
                            FT_ERR_INVALID_ARGUMENT);
            flat.insert(flat.end(), v.begin(), v.end());
        }
        const at::Tensor want = at::tensor(flat, at::kDouble).view(got.sizes());
        const at::Tensor diff = (got - want).abs();
        r.max_abs = std::max(r.max_abs, diff.max().item<double>());
        r.max_rel = std::max(r.max_rel, (diff / want.abs().clamp_min(1e-6)).max().item<double>());
        r.logits += got.numel();
    }
    r.pass = r.max_abs <= req.tolerance;
    return r;
}

int verify_command(const VerifyRequest& req, const PluginRegistry& registry) {
    const VerifyResult r = verify_logits(req, registry);
    std::printf("fthost verify: %s against %s: %lld logits, max abs diff %.3g, max rel diff %.3g, tolerance %.3g: %s\n",
                req.checkpoint.c_str(), req.reference.c_str(), static_cast<long long>(r.logits), r.max_abs, r.max_rel,
                req.tolerance, r.pass ? "PASS" : "FAIL");
    return r.pass ? 0 : 1;
}

}  // namespace fthost::host
