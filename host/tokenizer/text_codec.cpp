#include "tokenizer/text_codec.hpp"

#include "io/atomic_file.hpp"
#include "tokenizer/byte_tokenizer.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host {
namespace {

// What a model directory may hold besides weights that a tokenizer needs (and that
// transformers and vLLM read).
const char* const kTokenizerFiles[] = {"tokenizer.json",     "tokenizer.model",         "spiece.model",
                                       "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                                       "added_tokens.json",  "vocab.json",              "merges.txt",
                                       "chat_template.jinja"};

// The tokenizer file load_tokenizer reads in `dir`, or "" when there is none.
std::string tokenizer_file_in(const fs::path& dir) {
    for (const char* f : {"tokenizer.json", "tokenizer.model", "spiece.model"})
        if (fs::exists(dir / f)) return f;
    return "";
}

json read_json_file(const fs::path& p) {
    try {
        return json::parse(read_text(p));
    } catch (const json::exception& e) {
        throw Error(p.string() + ": not valid JSON (" + e.what() + ")", FT_ERR_INVALID_ARGUMENT);
    }
}

// tokenizer_config.json writes a special token as "text", {"content": "text", ...} or null.
std::string token_string(const json& config, const char* key) {
    if (!config.contains(key)) return "";
    const json& v = config[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return "";
}

// eos_token_id in generation_config.json / config.json: one id or a list.
std::vector<int64_t> eos_ids_in(const fs::path& file) {
    std::vector<int64_t> ids;
    if (!fs::exists(file)) return ids;
    const json j = read_json_file(file);
    if (!j.contains("eos_token_id")) return ids;
    const json& v = j["eos_token_id"];
    if (v.is_number_integer()) ids.push_back(v.get<int64_t>());
    else if (v.is_array())
        for (const auto& x : v)
            if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
    return ids;
}

void add_unique(std::vector<int64_t>& v, int64_t id) {
    if (std::find(v.begin(), v.end(), id) == v.end()) v.push_back(id);
}

}  // namespace

std::shared_ptr<const TextCodec> TextCodec::bytes() {
    static const std::shared_ptr<const TextCodec> codec = [] {
        auto c = std::make_shared<TextCodec>();
        c->tokenizer_ = std::make_shared<ByteTokenizer>();
        c->template_ = ChatTemplate::chatml;
        c->eos_ = ByteTokenizer::special_name(ByteTokenizer::kEos);
        c->eos_id_ = ByteTokenizer::kEos;
        c->pad_id_ = ByteTokenizer::kPad;
        c->stop_ids_ = {ByteTokenizer::kEos, ByteTokenizer::kImEnd};
        c->sample_limit_ = ByteTokenizer::kPad;
        c->source_ = "byte-level";
        return std::shared_ptr<const TextCodec>(std::move(c));
    }();
    return codec;
}

std::shared_ptr<const TextCodec> TextCodec::for_model(const fs::path& dir, const std::string& chat_template) {
    if (tokenizer_file_in(dir).empty()) {
        if (fs::exists(dir / "config.json") && !fs::exists(dir / "stage.json"))
            throw Error(dir.string() + " is a Hugging Face checkpoint without its tokenizer (tokenizer.json, "
                                       "tokenizer.model or spiece.model, with tokenizer_config.json): copy those files "
                                       "from where the checkpoint came from next to its weights",
                        FT_ERR_CONFIG);
        if (!chat_template.empty() && chat_template_from_name(chat_template) != ChatTemplate::chatml)
            throw Error("chat_template '" + chat_template + "': the model in " + dir.string() +
                            " uses fthost's byte-level tokenizer, whose only template is chatml",
                        FT_ERR_CONFIG);
        return bytes();
    }
    auto c = std::make_shared<TextCodec>();
    c->tokenizer_ = load_tokenizer(dir);
    c->source_ = tokenizer_file_in(dir);
    for (const char* f : kTokenizerFiles)
        if (fs::exists(dir / f)) c->files_.push_back(dir / f);

    const fs::path config_file = dir / "tokenizer_config.json";
    const json config = fs::exists(config_file) ? read_json_file(config_file) : json::object();
    c->bos_ = token_string(config, "bos_token");
    c->eos_ = token_string(config, "eos_token");
    if (c->eos_.empty() && c->source_ != "tokenizer.json") c->eos_ = "</s>";
    std::vector<int64_t> generation_eos = eos_ids_in(dir / "generation_config.json");
    for (int64_t id : eos_ids_in(dir / "config.json")) add_unique(generation_eos, id);
    if (auto id = c->eos_.empty() ? std::nullopt : c->tokenizer_->token_to_id(c->eos_)) c->eos_id_ = *id;
    else if (!generation_eos.empty()) c->eos_id_ = generation_eos.front();
    else
        throw Error(dir.string() + ": cannot tell the end-of-sequence token: tokenizer_config.json has no eos_token "
                        "and neither generation_config.json nor config.json an eos_token_id",
                    FT_ERR_CONFIG);
    const std::string pad = token_string(config, "pad_token");
    auto pad_id = pad.empty() ? std::nullopt : c->tokenizer_->token_to_id(pad);
    c->pad_id_ = pad_id ? *pad_id : c->eos_id_;  // padding is never attended to nor a label

    if (!chat_template.empty()) {
        c->template_ = chat_template_from_name(chat_template);
    } else {
        try {
            c->template_ = recognise_chat_template(dir);
        } catch (const Error& e) {
            c->template_error_ = e.what();  // an error only if a conversation is rendered
        }
    }
    c->stop_ids_ = {c->eos_id_};
    for (int64_t id : generation_eos) add_unique(c->stop_ids_, id);
    if (c->template_) {
        const ChatTemplate t = *c->template_;
        const char* end_of_turn = t == ChatTemplate::chatml || t == ChatTemplate::qwen3 ? "<|im_end|>"
                                  : t == ChatTemplate::llama3                           ? "<|eot_id|>"
                                  : t == ChatTemplate::gemma || t == ChatTemplate::gemma3 ? "<end_of_turn>"
                                  : t == ChatTemplate::phi3                             ? "<|end|>"
                                                                                        : nullptr;
        if (end_of_turn)
            if (auto id = c->tokenizer_->token_to_id(end_of_turn)) add_unique(c->stop_ids_, *id);
    }
    c->sample_limit_ = c->tokenizer_->vocab_size();
    return c;
}

ChatTemplate TextCodec::chat_template() const {
    if (!template_) throw Error(template_error_, FT_ERR_CONFIG);
    return *template_;
}

std::vector<ChatSegment> TextCodec::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    return render_chat(chat_template(), messages, add_generation_prompt, bos_, eos_);
}

EncodedChat TextCodec::encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
    const auto segments = render(messages, add_generation_prompt);
    std::string text;
    std::vector<std::pair<size_t, size_t>> spans;  // assistant [begin, end) in text
    for (const auto& s : segments) {
        if (s.assistant) spans.emplace_back(text.size(), text.size() + s.text.size());
        text += s.text;
    }
    EncodedChat out;
    std::vector<size_t> starts;
    out.ids = tokenizer_->encode_with_offsets(text, starts);
    out.assistant.assign(out.ids.size(), 0);
    // A token belongs to the assistant when its text [start, next start) overlaps a span
    // (transformers marks char_to_token(span begin) .. char_to_token(span end - 1)).
    for (size_t i = 0; i < out.ids.size(); ++i) {
        const size_t b = starts[i], e = i + 1 < starts.size() ? std::max(starts[i + 1], b + 1) : text.size();
        for (const auto& [sb, se] : spans)
            if (b < se && sb < e) out.assistant[i] = 1;
    }
    return out;
}

void TextCodec::save(const fs::path& dir) const {
    for (const auto& f : files_) fs::copy_file(f, dir / f.filename(), fs::copy_options::overwrite_existing);
}

std::string TextCodec::describe() const {
    return source_ + (template_ ? std::string(", chat template ") + chat_template_name(*template_) : ", no chat template");
}

}  // namespace fthost::host
