// SentencePiece .model files through the sentencepiece library itself: the normaliser,
// the model (BPE with byte fallback, unigram) and decoding are its own. Special-token
// strings in the text (<s>, </s>, <unk>: the control and unknown pieces) are cut out
// first and become their ids, and each run of text between them is encoded on its own,
// as transformers' (legacy) Llama and T5 tokenizers do; sentencepiece alone would spell
// "</s>" out in characters. Chat templates put those strings in the text.
//
// A T5 model (tokenizer_config.json's "tokenizer_class" T5Tokenizer, T5TokenizerFast or
// the MT5 ones; without one, config.json's "model_type" t5, mt5 or umt5), spiece.model or
// tokenizer.model, follows transformers 4's slow T5Tokenizer, the sentencepiece one, as it
// loads that directory:
//   - the sentinels <extra_id_0> .. <extra_id_{N-1}> (N = "extra_ids", 100 by default)
//     follow the pieces, <extra_id_0> the highest id; tokenizer_config.json's
//     added_tokens_decoder, where present, gives every added token's id and its
//     lstrip/rstrip (which strip the whitespace of the text next to it, as Python's
//     str.strip does);
//   - add_special_tokens appends </s> unless the ids already end with it; there is no BOS;
//   - decoding is its decode(): sentinels (and other added tokens that are not special
//     ones) are joined to the decoded text around them with single spaces, special pieces
//     (</s>, <pad>, <unk>) are written as their strings, and each run of pieces is
//     decoded by sentencepiece and stripped; clean_up_tokenization_spaces as configured.
// legacy: false (transformers' other T5 tokenization) is refused.
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/tokenizer_json.hpp"

#include <fthost/plugin.hpp>

#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <unordered_map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host {
namespace {

// Python's str.isspace, which str.strip uses.
bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// [begin, end) of `s` without the Python whitespace at its left and/or right end.
std::pair<size_t, size_t> py_strip(std::string_view s, bool left, bool right) {
    const auto cps = tokenizer_json::code_points(s);
    size_t b = 0, e = cps.size();
    if (left)
        while (b < e && py_space(cps[b].first)) ++b;
    if (right)
        while (e > b && py_space(cps[e - 1].first)) --e;
    return {b < cps.size() ? cps[b].second : s.size(), e < cps.size() ? cps[e].second : s.size()};
}

std::string py_strip_copy(const std::string& s) {
    const auto [b, e] = py_strip(s, true, true);
    return s.substr(b, e - b);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

// tokenizer_config.json writes a special token as "text", {"content": "text", ...} or null.
std::optional<std::string> token_string(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return std::nullopt;
}

// T5-style: what transformers' AutoTokenizer loads as T5Tokenizer (MT5Tokenizer is the same
// class): tokenizer_config.json's tokenizer_class, else config.json's model_type.
bool is_t5(const fs::path& dir, const json& config) {
    if (config.contains("tokenizer_class") && config["tokenizer_class"].is_string()) {
        static const std::set<std::string> t5 = {"T5Tokenizer", "T5TokenizerFast", "MT5Tokenizer", "MT5TokenizerFast"};
        return t5.count(config["tokenizer_class"].get<std::string>()) > 0;
    }
    if (!fs::exists(dir / "config.json")) return false;
    const json model = tokenizer_json::read(dir / "config.json");
    const std::string type = model.is_object() ? model.value("model_type", "") : "";
    return type == "t5" || type == "mt5" || type == "umt5";
}

class SentencePieceTokenizer : public Tokenizer {
public:
    explicit SentencePieceTokenizer(const fs::path& file) {
        const auto status = sp_.Load(file.string());
        if (!status.ok()) throw Error(file.string() + ": not a SentencePiece model (" + status.ToString() + ")");
        const fs::path config_file = file.parent_path() / "tokenizer_config.json";
        const json config = fs::exists(config_file) ? tokenizer_json::read(config_file) : json::object();
        if (is_t5(file.parent_path(), config)) {
            load_t5(config, config_file);
        } else {
            for (int id = 0; id < sp_.GetPieceSize(); ++id)
                if (sp_.IsControl(id) || sp_.IsUnknown(id)) added_.push_back({sp_.IdToPiece(id), id, false, false});
        }
        std::stable_sort(added_.begin(), added_.end(),
                         [](const auto& a, const auto& b) { return a.content.size() > b.content.size(); });  // longest first
        for (size_t i = 0; i < added_.size(); ++i) {
            by_id_.emplace(added_[i].id, i);
            if (!added_[i].content.empty()) first_byte_[static_cast<unsigned char>(added_[i].content[0])] = true;
        }
    }

    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<size_t> starts;
        std::vector<int64_t> ids = encode_with_offsets(text, starts);
        if (!add_special_tokens) return ids;
        if (t5_) {
            if (ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);
        } else if (sp_.bos_id() >= 0) {
            ids.insert(ids.begin(), sp_.bos_id());
        }
        return ids;
    }

    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        std::vector<int64_t> ids;
        starts.clear();
        for (const auto& c : chunks(text)) {
            if (c.token) {
                ids.push_back(c.token->id);
                starts.push_back(c.begin);
                continue;
            }
            if (c.end <= c.begin) continue;
            const auto spt = sp_.EncodeAsImmutableProto(text.substr(c.begin, c.end - c.begin));
            for (const auto& p : spt.pieces()) {
                ids.push_back(p.id());
                starts.push_back(c.begin + std::min<size_t>(p.begin(), c.end - c.begin));
            }
        }
        return ids;
    }

    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
        if (t5_) return decode_t5(ids, skip_special_tokens);
        std::vector<int> in;
        for (int64_t id : ids) {
            if (id < 0 || id >= sp_.GetPieceSize()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
            if (skip_special_tokens && sp_.IsControl(static_cast<int>(id))) continue;
            in.push_back(static_cast<int>(id));
        }
        std::string text;
        const auto status = sp_.Decode(in, &text);
        if (!status.ok()) throw Error("SentencePiece decode: " + status.ToString());
        return utf8_lossy(text);
    }

    int64_t vocab_size() const override {
        int64_t n = sp_.GetPieceSize();
        for (const auto& a : added_) n = std::max(n, a.id + 1);
        return n;
    }

    std::optional<int64_t> token_to_id(const std::string& token) const override {
        for (const auto& a : added_)
            if (a.content == token) return a.id;
        const int id = sp_.PieceToId(token);
        if (id == sp_.unk_id() && token != sp_.IdToPiece(sp_.unk_id())) return std::nullopt;
        return id;
    }

private:
    struct Added {
        std::string content;
        int64_t id;
        bool lstrip, rstrip;
    };
    struct Chunk {
        size_t begin, end;
        const Added* token;
    };

    void load_t5(const json& config, const fs::path& config_file) {
        t5_ = true;
        if (config.contains("legacy") && config["legacy"].is_boolean() && !config["legacy"].get<bool>())
            tokenizer_json::unsupported(config_file, "\"legacy\": false (transformers' non-legacy T5Tokenizer)");
        const int64_t pieces = sp_.GetPieceSize();
        const int64_t extra = config.contains("extra_ids") && config["extra_ids"].is_number_integer()
                                  ? config["extra_ids"].get<int64_t>()
                                  : 100;
        std::map<int64_t, Added> by_id;
        // The special tokens (<pad>, </s>, <unk> by default) where they are pieces ...
        for (const char* key : {"eos_token", "unk_token", "pad_token", "bos_token", "sep_token", "cls_token", "mask_token"}) {
            const char* fallback = std::string(key) == "eos_token"   ? "</s>"
                                   : std::string(key) == "unk_token" ? "<unk>"
                                   : std::string(key) == "pad_token" ? "<pad>"
                                                                     : nullptr;
            std::optional<std::string> s = config.contains(key) ? token_string(config[key]) : std::nullopt;
            if (!config.contains(key) && fallback) s = fallback;
            if (!s) continue;
            specials_.insert(*s);
            const int id = sp_.PieceToId(*s);
            if (sp_.IdToPiece(id) == *s) by_id[id] = {*s, id, false, false};
        }
        // ... the sentinels after the pieces, <extra_id_0> last ...
        std::set<std::string> additional;
        for (int64_t i = 0; i < extra; ++i) {
            const std::string s = "<extra_id_" + std::to_string(i) + ">";
            specials_.insert(s);
            additional.insert(s);
            by_id[pieces - 1 + extra - i] = {s, pieces - 1 + extra - i, true, true};
        }
        if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array())
            for (const auto& t : config["additional_special_tokens"])
                if (auto s = token_string(t)) specials_.insert(*s), additional.insert(*s);
        // ... and what tokenizer_config.json says, which wins.
        if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object())
            for (const auto& [key, t] : config["added_tokens_decoder"].items()) {
                if (t.value("single_word", false)) tokenizer_json::unsupported(config_file, "added token option single_word");
                const int64_t id = std::stoll(key);
                by_id[id] = {t.at("content").get<std::string>(), id, t.value("lstrip", false), t.value("rstrip", false)};
            }
        for (auto& [_, a] : by_id) added_.push_back(a);
        // Decoded apart: added tokens that are not special, and additional special ones past the pieces.
        for (const auto& a : added_)
            if (!specials_.count(a.content) || (additional.count(a.content) && a.id >= pieces)) separate_.insert(a.content);
        const std::string eos = config.contains("eos_token") ? token_string(config["eos_token"]).value_or("</s>") : "</s>";
        const auto eos_id = token_to_id(eos);
        if (!eos_id) throw Error(config_file.string() + ": eos_token '" + eos + "' is not a token", FT_ERR_CONFIG);
        eos_id_ = *eos_id;
        add_prefix_space_ = !config.contains("add_prefix_space") ||
                            (config["add_prefix_space"].is_boolean() && config["add_prefix_space"].get<bool>());
        clean_up_ = config.value("clean_up_tokenization_spaces", false);
    }

    // The text cut at added tokens (leftmost, longest there), the text next to a T5
    // token with lstrip/rstrip stripped as Python strips it.
    std::vector<Chunk> chunks(const std::string& text) const {
        std::vector<Chunk> out;
        size_t start = 0, i = 0;
        while (i < text.size()) {
            const auto hit = !first_byte_[static_cast<unsigned char>(text[i])]
                                 ? added_.end()
                                 : std::find_if(added_.begin(), added_.end(), [&](const auto& s) {
                                       return !s.content.empty() && text.compare(i, s.content.size(), s.content) == 0;
                                   });
            if (hit == added_.end()) {
                ++i;
                continue;
            }
            if (i > start) out.push_back({start, i, nullptr});
            out.push_back({i, i + hit->content.size(), &*hit});
            i += hit->content.size();
            start = i;
        }
        if (start < text.size()) out.push_back({start, text.size(), nullptr});
        for (size_t k = 0; k < out.size(); ++k) {
            const Added* t = out[k].token;
            if (!t) continue;
            if (t->rstrip && k + 1 < out.size() && !out[k + 1].token) {
                Chunk& c = out[k + 1];
                c.begin += py_strip(std::string_view(text).substr(c.begin, c.end - c.begin), true, false).first;
            }
            if (t->lstrip && k > 0 && !out[k - 1].token) {
                Chunk& c = out[k - 1];
                c.end = c.begin + py_strip(std::string_view(text).substr(c.begin, c.end - c.begin), false, true).second;
            }
        }
        return out;
    }

    std::string sp_decode(const std::vector<std::string>& pieces) const {
        std::string text;
        const auto status = sp_.Decode(pieces, &text);
        if (!status.ok()) throw Error("SentencePiece decode: " + status.ToString());
        return text;
    }

    // transformers' convert_tokens_to_string for T5.
    std::string pieces_to_string(std::vector<std::string> tokens) const {
        if (!tokens.empty() && add_prefix_space_ && tokens[0].rfind("\xE2\x96\x81", 0) == 0) tokens[0].erase(0, 3);
        std::vector<std::string> run;
        std::string out;
        bool previous_special = false;
        for (const auto& t : tokens) {
            if (specials_.count(t)) {
                if (!previous_special) out += ' ';
                out += sp_decode(run) + t;
                previous_special = true;
                run.clear();
            } else {
                run.push_back(t);
                previous_special = false;
            }
        }
        out += sp_decode(run);
        return py_strip_copy(out);
    }

    std::string decode_t5(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
        std::vector<std::string> texts, run;
        for (int64_t id : ids) {
            const auto found = by_id_.find(id);
            const Added* a = found == by_id_.end() ? nullptr : &added_[found->second];
            if (!a && (id < 0 || id >= sp_.GetPieceSize()))
                throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
            const std::string token = a ? a->content : sp_.IdToPiece(static_cast<int>(id));
            if (skip_special_tokens && specials_.count(token)) continue;
            if (separate_.count(token)) {
                if (!run.empty()) {
                    std::string s = pieces_to_string(run);
                    if (!s.empty()) texts.push_back(std::move(s));
                    run.clear();
                }
                texts.push_back(token);
            } else {
                run.push_back(token);
            }
        }
        if (!run.empty()) texts.push_back(pieces_to_string(run));
        std::string out;
        for (size_t i = 0; i < texts.size(); ++i) out += (i ? " " : "") + texts[i];
        if (clean_up_) {
            for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
                     {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"}, {" 'm", "'m"},
                     {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}})
                replace_all(out, from, to);
        }
        return utf8_lossy(out);
    }

    sentencepiece::SentencePieceProcessor sp_;
    std::vector<Added> added_;  // longest first
    std::unordered_map<int64_t, size_t> by_id_;
    std::array<bool, 256> first_byte_{};  // bytes an added token starts with
    bool t5_ = false;
    // T5: all_special_tokens, the tokens decoded apart (legacy_added_tokens), </s>.
    std::set<std::string> specials_, separate_;
    int64_t eos_id_ = -1;
    bool add_prefix_space_ = true, clean_up_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const fs::path& model_file) {
    return std::make_unique<SentencePieceTokenizer>(model_file);
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
    if (fs::exists(dir / "tokenizer.json")) return tokenizer_json::load(dir / "tokenizer.json");
    for (const char* name : {"tokenizer.model", "spiece.model"})
        if (fs::exists(dir / name)) return load_sentencepiece_tokenizer(dir / name);
    throw Error(dir.string() + ": no tokenizer.json, tokenizer.model or spiece.model", FT_ERR_CONFIG);
}

}  // namespace fthost::host
