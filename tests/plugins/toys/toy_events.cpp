// toy_events — a test-only transformer over transaction sequences (FT_INPUT_FIELDS, no
// text, no tokenizer): encode_row turns a row's "events" ([{"mcc": int, "amount":
// number}, ...]) into the event codes (input_ids), log amounts, and per-step targets it
// aligns itself (FT_LABEL_SAME): labels[t] = the next event's code, next_amount[t] its log
// amount. Its LM head predicts the next code, so `cpt` trains it through the host's label
// log-probs; named outputs ("type_logits", "amount_pred", "pooled") serve objectives of
// their own. What a transaction-sequence plugin does, at toy size (docs/ARCHITECTURE.md).
#include "toy_transformer.hpp"

#include <nlohmann/json.hpp>

#include <cmath>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("num_codes", FT_OPT_INT, "8", "event codes (merchant categories) 0..num_codes-1"),
    option("hidden_size", FT_OPT_INT, "32", "model width"),
    option("num_layers", FT_OPT_INT, "2", "transformer layers"),
    option("num_heads", FT_OPT_INT, "4", "attention heads"),
    option("max_positions", FT_OPT_INT, "64", "longest event sequence"),
};

class ToyEvents : public toys::ToyModel {
public:
    static constexpr uint32_t inputs = FT_INPUT_FIELDS;
    static constexpr int32_t label_alignment = FT_LABEL_SAME;

    ToyEvents(const fthost::Host&, const fthost::Config& cfg)
        : codes_(cfg.get_int("num_codes")),
          hidden_(cfg.get_int("hidden_size")),
          max_pos_(cfg.get_int("max_positions")),
          body_(hidden_, cfg.get_int("num_heads"), cfg.get_int("num_layers"),
                linear_fn(), param_fn()) {
        validate(cfg);
        code_embed_ = param("embed_codes.weight", at::randn({codes_, hidden_}) * 0.02);
        positions_ = param("embed_positions.weight", at::randn({max_pos_, hidden_}) * 0.02);
        amount_in_ = &linear("embed_amount", 1, hidden_);
        amount_out_ = &linear("amount_head", hidden_, 1);
        head_ = param("code_head.weight", at::randn({codes_, hidden_}) * 0.02);
    }

    static void validate(const fthost::Config& cfg) {
        for (const char* k : {"num_codes", "hidden_size", "num_layers", "num_heads", "max_positions"})
            if (cfg.get_int(k) < 1) cfg.fail(k, "must be positive");
        if (cfg.get_int("hidden_size") % cfg.get_int("num_heads") != 0) cfg.fail("num_heads", "must divide hidden_size");
    }

    void encode_row(const std::string& row_json, ft_label_policy, int64_t max_steps, const fthost::ExampleSink& sink) const {
        const auto row = nlohmann::json::parse(row_json);
        const auto it = row.find("events");
        if (it == row.end() || !it->is_array() || it->size() < 2)
            throw fthost::Error("field 'events' must be a list of at least 2 {\"mcc\", \"amount\"} objects");
        const int64_t T = std::min<int64_t>({static_cast<int64_t>(it->size()), max_steps, max_pos_});
        at::Tensor ids = at::empty({T}, at::kLong), amount = at::empty({T}), labels = at::full({T}, -100, at::kLong);
        at::Tensor next_amount = at::zeros({T}), next_mask = at::zeros({T});
        for (int64_t t = 0; t < T; ++t) {
            const auto& e = (*it)[t];
            if (!e.is_object() || !e.contains("mcc") || !e["mcc"].is_number_integer() || !e.contains("amount") ||
                !e["amount"].is_number())
                throw fthost::Error("field 'events' item " + std::to_string(t) + " needs integer 'mcc' and number 'amount'");
            const int64_t code = e["mcc"].get<int64_t>();
            if (code < 0 || code >= codes_)
                throw fthost::Error("field 'events' item " + std::to_string(t) + ": mcc " + std::to_string(code) +
                                    " is outside 0.." + std::to_string(codes_ - 1) + " (num_codes)");
            ids[t] = code;
            amount[t] = std::log1p(std::max(0.0, e["amount"].get<double>()));
            if (t > 0) {  // this event is step t-1's target
                labels[t - 1] = code;
                next_amount[t - 1] = amount[t];
                next_mask[t - 1] = 1.0;
            }
        }
        sink.set_steps(T);
        sink.add("input_ids", ids, 0);
        sink.add("labels", labels, -100);
        sink.add("amount", amount, 0);
        sink.add("next_amount", next_amount, 0);
        sink.add("next_mask", next_mask, 0);
    }

    at::Tensor forward(const fthost::BatchView& b, const fthost::ModelOutputs& out) {
        at::Tensor x = at::embedding(code_embed_, b.input_ids) + (*amount_in_)(b.extra("amount").unsqueeze(-1)) +
                       at::embedding(positions_, b.position_ids.clamp_max(max_pos_ - 1));
        const at::Tensor valid = b.sequence_ids.ge(0);
        at::Tensor h = body_.forward(x, valid);
        if (out.wanted()) {
            const at::Tensor w = valid.to(h.scalar_type()).unsqueeze(-1);
            out.add("pooled", (h * w).sum(1) / w.sum(1).clamp_min(1));
            out.add("amount_pred", (*amount_out_)(h).squeeze(-1));
            out.add("type_logits", lm_head(h));
        }
        return h;
    }

    at::Tensor lm_head(const at::Tensor& hidden) { return at::linear(hidden, head_); }
    int64_t vocab_size() const { return codes_; }

private:

    int64_t codes_, hidden_, max_pos_;
    toys::ToyTransformer body_;
    at::Tensor code_embed_, positions_, head_;
    fthost::LinearSite *amount_in_ = nullptr, *amount_out_ = nullptr;
};

}  // namespace

FTHOST_MODEL(toy_events, ToyEvents, "toy_events", "0.1.0", "test-only transformer over transaction events", kOptions);
FTHOST_PLUGINS(toy_events)
