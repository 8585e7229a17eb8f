// Hugging Face tokenizer.json with a BPE model, as the `tokenizers` library runs it:
//   1. added tokens (special ones included) are cut out of the raw text first, longest
//      match leftmost; they become their own ids;
//   2. the rest is normalised (none, NFC — through utf8proc);
//   3. pre-tokenised: Split by a regex (PCRE2 with Unicode properties, the pattern taken
//      verbatim from the file) and/or ByteLevel (GPT-2's regex, bytes mapped to printable
//      code points);
//   4. each piece is merged by BPE rank (lowest first, leftmost on ties), or taken whole
//      when ignore_merges is set and the piece is a token;
//   5. a TemplateProcessing post-processor adds e.g. <|begin_of_text|>.
// Decoding maps byte-level code points back to bytes (ByteLevel decoder). Anything else
// in the file (other models, normalisers, pre-tokenisers, decoders) is an error naming it.
#include "tokenizer/tokenizer.hpp"

#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host {

std::string utf8_lossy(const std::string& bytes) {
    std::string out;
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(bytes.data());
    utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(bytes.size());
    while (left > 0) {
        utf8proc_int32_t cp = 0;
        const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
        if (n > 0) {
            out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
            p += n, left -= n;
            continue;
        }
        // One U+FFFD per maximal prefix of a valid sequence (at least one byte), as Rust does.
        utf8proc_ssize_t bad = 1;
        const unsigned char lead = p[0];
        const int need = lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 1;
        while (bad < need && bad < left && (p[bad] & 0xC0) == 0x80) {
            // Stop where the prefix can no longer become valid (e.g. E0 80, ED A0, F4 90).
            if (bad == 1 && ((lead == 0xE0 && p[1] < 0xA0) || (lead == 0xED && p[1] > 0x9F) ||
                             (lead == 0xF0 && p[1] < 0x90) || (lead == 0xF4 && p[1] > 0x8F)))
                break;
            ++bad;
        }
        out += "\xEF\xBF\xBD";
        p += bad, left -= bad;
    }
    return out;
}

namespace {

[[noreturn]] void unsupported(const fs::path& file, const std::string& what) {
    throw Error(file.string() + ": " + what + " is not supported", FT_ERR_UNSUPPORTED);
}

void append_utf8(std::string& s, uint32_t cp) {
    utf8proc_uint8_t buf[4];
    const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
    s.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// GPT-2's reversible byte -> printable code point map.
struct ByteMap {
    std::array<std::string, 256> to_char;
    std::unordered_map<uint32_t, uint8_t> to_byte;
    ByteMap() {
        std::vector<int> bs;
        for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
        for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
        for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
        std::vector<uint32_t> cs(bs.begin(), bs.end());
        int n = 0;
        for (int b = 0; b < 256; ++b)
            if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
        for (size_t i = 0; i < bs.size(); ++i) {
            append_utf8(to_char[static_cast<size_t>(bs[i])], cs[i]);
            to_byte[cs[i]] = static_cast<uint8_t>(bs[i]);
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

// Code points of a valid UTF-8 string, with each one's byte offset.
std::vector<std::pair<uint32_t, size_t>> code_points(const std::string& s) {
    std::vector<std::pair<uint32_t, size_t>> out;
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
    size_t off = 0;
    while (off < s.size()) {
        utf8proc_int32_t cp = 0;
        auto n = utf8proc_iterate(p + off, static_cast<utf8proc_ssize_t>(s.size() - off), &cp);
        if (n <= 0) n = 1, cp = 0xFFFD;
        out.emplace_back(static_cast<uint32_t>(cp), off);
        off += static_cast<size_t>(n);
    }
    return out;
}

// A compiled regex; pieces of a text split "Isolated" (matches and the gaps between them).
class Regex {
public:
    Regex(const std::string& pattern, const fs::path& file) {
        int code = 0;
        PCRE2_SIZE at = 0;
        re_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &code,
                            &at, nullptr);
        if (!re_) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(code, msg, sizeof msg);
            throw Error(file.string() + ": pre-tokenizer regex does not compile at " + std::to_string(at) + ": " +
                            reinterpret_cast<const char*>(msg),
                        FT_ERR_UNSUPPORTED);
        }
    }
    ~Regex() { pcre2_code_free(re_); }
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Isolated split: every match and every non-empty gap, in order; invert keeps the
    // gaps as the delimiters instead.
    std::vector<std::string> split(const std::string& text) const {
        std::vector<std::string> out;
        pcre2_match_data* md = pcre2_match_data_create_from_pattern(re_, nullptr);
        size_t pos = 0, gap_start = 0;
        while (pos <= text.size()) {
            const int rc = pcre2_match(re_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, md, nullptr);
            if (rc < 0) break;
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
            const size_t b = ov[0], e = ov[1];
            if (e == b) {  // empty match: step one code point
                pos = b + 1;
                while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
                continue;
            }
            if (b > gap_start) out.push_back(text.substr(gap_start, b - gap_start));
            out.push_back(text.substr(b, e - b));
            pos = gap_start = e;
        }
        if (gap_start < text.size()) out.push_back(text.substr(gap_start));
        pcre2_match_data_free(md);
        return out;
    }

private:
    pcre2_code* re_ = nullptr;
};

const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct AddedToken {
    std::string content;
    int64_t id;
    bool special, normalized;
};

class BpeTokenizer : public Tokenizer {
public:
    explicit BpeTokenizer(const fs::path& file) : file_(file) {
        json j;
        try {
            j = json::parse(read_text(file));
        } catch (const json::exception& e) {
            throw Error(file.string() + ": not valid JSON (" + e.what() + ")", FT_ERR_INVALID_ARGUMENT);
        }
        load_model(j.at("model"));
        if (j.contains("added_tokens") && j["added_tokens"].is_array())
            for (const auto& t : j["added_tokens"]) {
                for (const char* k : {"lstrip", "rstrip", "single_word"})
                    if (t.value(k, false)) unsupported(file, std::string("added token option ") + k);
                added_.push_back({t.at("content").get<std::string>(), t.at("id").get<int64_t>(), t.value("special", false),
                                  t.value("normalized", false)});
                id_to_token_[added_.back().id] = added_.back().content;
                token_to_id_[added_.back().content] = added_.back().id;
            }
        std::sort(added_.begin(), added_.end(), [](const auto& a, const auto& b) { return a.content.size() > b.content.size(); });
        load_normalizer(j.value("normalizer", json()));
        load_pre_tokenizer(j.value("pre_tokenizer", json()));
        load_post_processor(j.value("post_processor", json()));
        const json dec = j.value("decoder", json());
        if (!dec.is_null() && dec.value("type", "") != "ByteLevel")
            unsupported(file, "decoder type '" + dec.value("type", "") + "'");
        for (const auto& [id, _] : id_to_token_) vocab_size_ = std::max(vocab_size_, id + 1);
    }

    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<int64_t> ids = encode_pieces(text, nullptr);
        if (add_special_tokens && !template_.empty()) {
            std::vector<int64_t> out;
            for (const auto& part : template_)
                if (part.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
                else out.insert(out.end(), part.ids.begin(), part.ids.end());
            return out;
        }
        return ids;
    }

    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        starts.clear();
        return encode_pieces(text, &starts);
    }

    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
        std::string bytes;
        for (int64_t id : ids) {
            auto it = id_to_token_.find(id);
            if (it == id_to_token_.end()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
            const AddedToken* added = find_added(id);
            if (added && added->special && skip_special_tokens) continue;
            if (!byte_level_) {
                bytes += it->second;
                continue;
            }
            for (const auto& [cp, _] : code_points(it->second)) {
                auto b = byte_map().to_byte.find(cp);
                if (b != byte_map().to_byte.end()) bytes.push_back(static_cast<char>(b->second));
                else append_utf8(bytes, cp);
            }
        }
        return utf8_lossy(bytes);
    }

    int64_t vocab_size() const override { return vocab_size_; }
    std::optional<int64_t> token_to_id(const std::string& token) const override {
        auto it = token_to_id_.find(token);
        if (it == token_to_id_.end()) return std::nullopt;
        return it->second;
    }

private:
    struct TemplatePart {
        bool is_sequence = false;
        std::vector<int64_t> ids;
    };
    struct Split {
        std::unique_ptr<Regex> regex;
        bool byte_level = false, add_prefix_space = false;
    };

    // Steps 1-4 of the file comment. With `starts`, each token's byte offset in `text`:
    // exact when normalisation leaves a piece unchanged (byte-level tokens are one byte per
    // code point); when NFC rewrites a piece, its tokens all start at the piece's start.
    std::vector<int64_t> encode_pieces(const std::string& text, std::vector<size_t>* starts) const {
        std::vector<int64_t> ids;
        size_t pos = 0;
        for (const auto& [piece, added] : split_added(text, false)) {
            const size_t piece_start = pos, piece_end = pos + piece.size();
            pos = piece_end;
            if (added) {
                ids.push_back(added->id);
                if (starts) starts->push_back(piece_start);
                continue;
            }
            const std::string normalized = normalize(piece);
            const bool exact = normalized == piece && byte_level_;
            size_t sub = 0;  // offset of the sub-piece in `normalized`
            for (const auto& [npiece, nadded] : split_added(normalized, true)) {
                const size_t sub_start = sub;
                sub += npiece.size();
                if (nadded) {
                    ids.push_back(nadded->id);
                    if (starts) starts->push_back(exact ? piece_start + sub_start : piece_start);
                    continue;
                }
                const auto words = pre_tokenize(npiece);
                // A ByteLevel add_prefix_space puts one byte before the text that is not in it.
                size_t mapped = 0;
                for (const auto& w : words) mapped += code_points(w).size();
                int64_t cursor = static_cast<int64_t>(piece_start + sub_start) -
                                 static_cast<int64_t>(mapped > npiece.size() ? mapped - npiece.size() : 0);
                for (const auto& word : words) {
                    const size_t first = ids.size();
                    bpe(word, ids);
                    if (!starts) continue;
                    for (size_t k = first; k < ids.size(); ++k) {
                        const int64_t at = std::clamp<int64_t>(cursor, piece_start, piece_end);
                        starts->push_back(exact ? static_cast<size_t>(at) : piece_start);
                        cursor += static_cast<int64_t>(code_points(id_to_token_.at(ids[k])).size());
                    }
                }
            }
        }
        return ids;
    }

    void load_model(const json& m) {
        if (m.value("type", "BPE") != "BPE") unsupported(file_, "model type '" + m.value("type", "") + "'");
        if (!m.value("continuing_subword_prefix", json()).is_null() && m["continuing_subword_prefix"] != "")
            unsupported(file_, "BPE continuing_subword_prefix");
        if (!m.value("end_of_word_suffix", json()).is_null() && m["end_of_word_suffix"] != "")
            unsupported(file_, "BPE end_of_word_suffix");
        ignore_merges_ = m.value("ignore_merges", false);
        byte_fallback_ = m.value("byte_fallback", false);
        if (!m.value("unk_token", json()).is_null()) unk_ = m["unk_token"].get<std::string>();
        for (const auto& [tok, id] : m.at("vocab").items()) {
            token_to_id_[tok] = id.get<int64_t>();
            id_to_token_[id.get<int64_t>()] = tok;
        }
        int rank = 0;
        for (const auto& merge : m.at("merges")) {
            std::string a, b;
            if (merge.is_string()) {  // "a b" (tokenizers < 0.20)
                const std::string s = merge.get<std::string>();
                const auto sp = s.find(' ');
                if (sp == std::string::npos) throw Error(file_.string() + ": merge '" + s + "' has no space");
                a = s.substr(0, sp), b = s.substr(sp + 1);
            } else {  // ["a", "b"]
                a = merge.at(0).get<std::string>(), b = merge.at(1).get<std::string>();
            }
            auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), iab = token_to_id_.find(a + b);
            if (ia == token_to_id_.end() || ib == token_to_id_.end() || iab == token_to_id_.end())
                throw Error(file_.string() + ": merge '" + a + " " + b + "' uses a token not in the vocabulary");
            merges_[{ia->second, ib->second}] = {rank++, iab->second};
        }
    }

    void load_normalizer(const json& n) {
        if (n.is_null()) return;
        const std::string type = n.value("type", "");
        if (type == "NFC") nfc_ = true;
        else if (type == "Sequence")
            for (const auto& x : n.at("normalizers")) load_normalizer(x);
        else unsupported(file_, "normalizer type '" + type + "'");
    }

    void load_pre_tokenizer(const json& p) {
        if (p.is_null()) return;
        const std::string type = p.value("type", "");
        if (type == "Sequence") {
            for (const auto& x : p.at("pretokenizers")) load_pre_tokenizer(x);
        } else if (type == "ByteLevel") {
            Split s;
            s.byte_level = true;
            s.add_prefix_space = p.value("add_prefix_space", false);
            if (p.value("use_regex", true)) s.regex = std::make_unique<Regex>(kGpt2Pattern, file_);
            splits_.push_back(std::move(s));
            byte_level_ = true;
        } else if (type == "Split") {
            if (p.value("behavior", "") != "Isolated" || p.value("invert", false))
                unsupported(file_, "Split behaviour '" + p.value("behavior", "") + "'" + (p.value("invert", false) ? " inverted" : ""));
            const json& pat = p.at("pattern");
            std::string re;
            if (pat.contains("Regex")) re = pat["Regex"].get<std::string>();
            else {  // a literal string: quote it
                re = "\\Q" + pat.at("String").get<std::string>() + "\\E";
            }
            Split s;
            s.regex = std::make_unique<Regex>(re, file_);
            splits_.push_back(std::move(s));
        } else {
            unsupported(file_, "pre-tokenizer type '" + type + "'");
        }
    }

    void load_post_processor(const json& p) {
        if (p.is_null()) return;
        const std::string type = p.value("type", "");
        if (type == "ByteLevel") return;  // offsets only
        if (type == "Sequence") {
            for (const auto& x : p.at("processors")) load_post_processor(x);
            return;
        }
        if (type != "TemplateProcessing") unsupported(file_, "post-processor type '" + type + "'");
        for (const auto& piece : p.at("single")) {
            TemplatePart part;
            if (piece.contains("Sequence")) {
                part.is_sequence = true;
            } else {
                const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
                part.ids = p.at("special_tokens").at(name).at("ids").get<std::vector<int64_t>>();
            }
            template_.push_back(part);
        }
    }

    const AddedToken* find_added(int64_t id) const {
        for (const auto& a : added_)
            if (a.id == id) return &a;
        return nullptr;
    }

    // Cuts added tokens (normalized ones when `normalized`) out of text, longest match
    // first at the leftmost position.
    std::vector<std::pair<std::string, const AddedToken*>> split_added(const std::string& text, bool normalized) const {
        std::vector<std::pair<std::string, const AddedToken*>> out;
        size_t start = 0, i = 0;
        while (i < text.size()) {
            const AddedToken* hit = nullptr;
            for (const auto& a : added_)
                if (a.normalized == normalized && !a.content.empty() && text.compare(i, a.content.size(), a.content) == 0) {
                    hit = &a;  // added_ is sorted longest first
                    break;
                }
            if (!hit) {
                ++i;
                continue;
            }
            if (i > start) out.emplace_back(text.substr(start, i - start), nullptr);
            out.emplace_back(hit->content, hit);
            i += hit->content.size();
            start = i;
        }
        if (start < text.size()) out.emplace_back(text.substr(start), nullptr);
        return out;
    }

    std::string normalize(const std::string& s) const {
        if (!nfc_ || s.empty()) return s;
        utf8proc_uint8_t* r = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
        if (!r) return s;
        std::string out(reinterpret_cast<const char*>(r));
        std::free(r);
        return out;
    }

    // Pre-tokenizers in order, each splitting every piece further; ByteLevel finally maps
    // bytes to code points.
    std::vector<std::string> pre_tokenize(const std::string& text) const {
        std::vector<std::string> pieces = {text};
        for (const auto& s : splits_) {
            std::vector<std::string> next;
            for (auto& p : pieces) {
                if (s.add_prefix_space && !p.empty() && p[0] != ' ' && &p == &pieces.front()) p = " " + p;
                if (!s.regex) {
                    next.push_back(p);
                    continue;
                }
                for (auto& q : s.regex->split(p)) next.push_back(std::move(q));
            }
            pieces = std::move(next);
        }
        if (byte_level_)
            for (auto& p : pieces) {
                std::string mapped;
                for (unsigned char c : p) mapped += byte_map().to_char[c];
                p = std::move(mapped);
            }
        return pieces;
    }

    void bpe(const std::string& word, std::vector<int64_t>& out) const {
        if (word.empty()) return;
        {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            auto it = cache_.find(word);
            if (it != cache_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        std::vector<int64_t> syms;
        auto whole = token_to_id_.find(word);
        if (ignore_merges_ && whole != token_to_id_.end()) {
            syms.push_back(whole->second);
        } else {
            const auto cps = code_points(word);
            for (size_t k = 0; k < cps.size(); ++k) {
                const size_t b = cps[k].second, e = k + 1 < cps.size() ? cps[k + 1].second : word.size();
                const std::string ch = word.substr(b, e - b);
                auto it = token_to_id_.find(ch);
                if (it != token_to_id_.end()) {
                    syms.push_back(it->second);
                } else if (byte_fallback_) {
                    for (unsigned char c : ch) {
                        char name[8];
                        std::snprintf(name, sizeof name, "<0x%02X>", c);
                        auto bt = token_to_id_.find(name);
                        if (bt != token_to_id_.end()) syms.push_back(bt->second);
                    }
                } else if (!unk_.empty() && token_to_id_.count(unk_)) {
                    syms.push_back(token_to_id_.at(unk_));
                }  // else: dropped, as `tokenizers` does without an unk token
            }
            // Merge the lowest-ranked adjacent pair (leftmost on ties) until none applies.
            while (syms.size() > 1) {
                int best = std::numeric_limits<int>::max();
                size_t at = 0;
                int64_t merged = 0;
                for (size_t k = 0; k + 1 < syms.size(); ++k) {
                    auto m = merges_.find({syms[k], syms[k + 1]});
                    if (m != merges_.end() && m->second.first < best) best = m->second.first, at = k, merged = m->second.second;
                }
                if (best == std::numeric_limits<int>::max()) break;
                syms[at] = merged;
                syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(at) + 1);
            }
        }
        out.insert(out.end(), syms.begin(), syms.end());
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (cache_.size() < 100000) cache_.emplace(word, std::move(syms));
    }

    fs::path file_;
    std::unordered_map<std::string, int64_t> token_to_id_;
    std::unordered_map<int64_t, std::string> id_to_token_;
    std::map<std::pair<int64_t, int64_t>, std::pair<int, int64_t>> merges_;  // pair -> (rank, merged id)
    std::vector<AddedToken> added_;
    std::vector<Split> splits_;
    std::vector<TemplatePart> template_;
    std::string unk_;
    int64_t vocab_size_ = 0;
    bool nfc_ = false, byte_level_ = false, ignore_merges_ = false, byte_fallback_ = false;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const fs::path& tokenizer_json) {
    return std::make_unique<BpeTokenizer>(tokenizer_json);
}

}  // namespace fthost::host
