// toy_captioner — a test-only image-conditioned text model (FT_INPUT_TEXT |
// FT_INPUT_FIELDS): the host tokenizes the row's prompt and completion, encode_row turns
// its "image" (a list of rows of grey levels) into pixel_values [1, S, S]; the model
// embeds the image's patches as a prefix the text attends to (image_attention =
// "prefix"), or as a memory every layer cross-attends to ("cross", as a decoder attends
// to its encoder), and returns hidden states for the text positions, so labels line up
// as for any decoder (FT_LABEL_NEXT). It has a KV cache: generation runs the image once
// per distinct prompt, in the prefill (with "cross", its keys and values are the cache's
// cross-attention state). What a vision-language plugin does, at toy size
// (docs/ARCHITECTURE.md).
#include "toy_transformer.hpp"

#include <nlohmann/json.hpp>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("vocab_size", FT_OPT_INT, "260", "vocabulary size (the host sets its tokenizer's size unless given)"),
    option("hidden_size", FT_OPT_INT, "32", "model width"),
    option("num_layers", FT_OPT_INT, "2", "transformer layers"),
    option("num_heads", FT_OPT_INT, "4", "attention heads"),
    option("image_size", FT_OPT_INT, "8", "images are image_size x image_size grey levels in [0, 1]"),
    option("patch_size", FT_OPT_INT, "4", "square patches, each one prefix position"),
    option("max_positions", FT_OPT_INT, "128", "longest text"),
    option("image_attention", FT_OPT_STRING, "\"prefix\"", "prefix (patches before the text) or cross (cross-attention)"),
};

class ToyCaptioner : public toys::ToyModel {
public:
    static constexpr uint32_t inputs = FT_INPUT_TEXT | FT_INPUT_FIELDS;

    ToyCaptioner(const fthost::Host&, const fthost::Config& cfg)
        : vocab_(cfg.get_int("vocab_size")),
          hidden_(cfg.get_int("hidden_size")),
          image_(cfg.get_int("image_size")),
          patch_(cfg.get_int("patch_size")),
          max_pos_(cfg.get_int("max_positions")),
          cross_(cfg.get_string("image_attention") == "cross"),
          body_(hidden_, cfg.get_int("num_heads"), cfg.get_int("num_layers"),
                linear_fn(), param_fn(), cross_) {
        validate(cfg);
        const int64_t patches = (image_ / patch_) * (image_ / patch_);
        embed_ = param("embed_tokens.weight", at::randn({vocab_, hidden_}) * 0.02);
        positions_ = param("embed_positions.weight", at::randn({max_pos_, hidden_}) * 0.02);
        patch_pos_ = param("vision.patch_positions", at::randn({patches, hidden_}) * 0.02);
        patch_proj_ = &linear("vision.patch_proj", patch_ * patch_, hidden_);
        head_ = param("lm_head.weight", at::randn({vocab_, hidden_}) * 0.02);
    }

    static void validate(const fthost::Config& cfg) {
        for (const char* k : {"vocab_size", "hidden_size", "num_layers", "num_heads", "image_size", "patch_size", "max_positions"})
            if (cfg.get_int(k) < 1) cfg.fail(k, "must be positive");
        if (cfg.get_int("hidden_size") % cfg.get_int("num_heads") != 0) cfg.fail("num_heads", "must divide hidden_size");
        if (cfg.get_int("image_size") % cfg.get_int("patch_size") != 0) cfg.fail("patch_size", "must divide image_size");
        const std::string mode = cfg.get_string("image_attention");
        if (mode != "prefix" && mode != "cross") cfg.fail("image_attention", "must be prefix or cross");
    }

    // {"image": [[grey, ...], ...]} -> pixel_values float [1, S, S].
    void encode_row(const std::string& row_json, ft_label_policy, int64_t, const fthost::ExampleSink& sink) const {
        const auto row = nlohmann::json::parse(row_json);
        const auto it = row.find("image");
        if (it == row.end() || !it->is_array() || static_cast<int64_t>(it->size()) != image_)
            throw fthost::Error("field 'image' must be a list of " + std::to_string(image_) + " rows");
        at::Tensor px = at::empty({1, image_, image_});
        auto a = px.accessor<float, 3>();
        for (int64_t y = 0; y < image_; ++y) {
            const auto& r = (*it)[y];
            if (!r.is_array() || static_cast<int64_t>(r.size()) != image_)
                throw fthost::Error("field 'image' row " + std::to_string(y) + " must hold " + std::to_string(image_) +
                                    " numbers");
            for (int64_t x = 0; x < image_; ++x) {
                if (!r[x].is_number()) throw fthost::Error("field 'image' row " + std::to_string(y) + " holds a non-number");
                a[0][y][x] = r[x].get<float>();
            }
        }
        sink.add("pixel_values", px, 0.0);
    }

    at::Tensor forward(const fthost::BatchView& b) {
        const at::Tensor prefix = patches(b.extra("pixel_values"));
        if (cross_) return body_.forward(text(b), b.sequence_ids.ge(0), prefix);
        const at::Tensor x = at::cat({prefix, text(b)}, 1);
        const at::Tensor valid = at::cat({at::ones({prefix.size(0), prefix.size(1)}, b.sequence_ids.options().dtype(at::kBool)),
                                          b.sequence_ids.ge(0)}, 1);
        return body_.forward(x, valid).narrow(1, prefix.size(1), b.input_ids.size(1));
    }

    // The prefill carries pixel_values and puts the patches in the cache first; decode
    // steps carry tokens only.
    at::Tensor forward_cached(const fthost::BatchView& b, fthost::KvCache& cache) {
        at::Tensor x = text(b), valid = b.sequence_ids.ge(0);
        if (cross_) {
            const auto px = b.extras.find("pixel_values");
            return body_.forward_cached(x, valid, cache, px == b.extras.end() ? at::Tensor() : patches(px->second));
        }
        int64_t skip = 0;
        if (b.extras.count("pixel_values")) {
            const at::Tensor prefix = patches(b.extras.at("pixel_values"));
            skip = prefix.size(1);
            x = at::cat({prefix, x}, 1);
            valid = at::cat({at::ones({prefix.size(0), skip}, valid.options()), valid}, 1);
        }
        return body_.forward_cached(x, valid, cache).narrow(1, skip, b.input_ids.size(1));
    }

    at::Tensor lm_head(const at::Tensor& hidden) { return at::linear(hidden, head_); }
    int64_t vocab_size() const { return vocab_; }

private:
    // [B, 1, S, S] -> [B, patches, H]
    at::Tensor patches(const at::Tensor& px) {
        const int64_t B = px.size(0), n = image_ / patch_;
        at::Tensor p = px.reshape({B, n, patch_, n, patch_}).permute({0, 1, 3, 2, 4}).reshape({B, n * n, patch_ * patch_});
        return (*patch_proj_)(p) + patch_pos_;
    }
    at::Tensor text(const fthost::BatchView& b) {
        return at::embedding(embed_, b.input_ids) + at::embedding(positions_, b.position_ids.clamp_max(max_pos_ - 1));
    }

    int64_t vocab_, hidden_, image_, patch_, max_pos_;
    bool cross_;
    toys::ToyTransformer body_;
    at::Tensor embed_, positions_, patch_pos_, head_;
    fthost::LinearSite* patch_proj_ = nullptr;
};

}  // namespace

FTHOST_MODEL(toy_captioner, ToyCaptioner, "toy_captioner", "0.1.0",
             "test-only image-conditioned text model: image patches as a prefix", kOptions);
FTHOST_PLUGINS(toy_captioner)
