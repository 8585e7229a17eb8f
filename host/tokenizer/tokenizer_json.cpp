#include "tokenizer/tokenizer_json.hpp"

#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>

#include <cstdio>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host {

namespace tokenizer_json {

json read(const fs::path& file) {
    try {
        return json::parse(read_text(file));
    } catch (const json::exception& e) {
        throw Error(file.string() + ": not valid JSON (" + utf8_lossy(e.what()) + ")", FT_ERR_INVALID_ARGUMENT);
    }
}

std::unique_ptr<Tokenizer> load(const fs::path& file) {
    const json j = read(file);
    if (!j.contains("model") || !j["model"].is_object()) throw Error(file.string() + ": no \"model\"", FT_ERR_INVALID_ARGUMENT);
    const json type_j = j["model"].value("type", json("BPE"));
    if (!type_j.is_string()) throw Error(file.string() + ": model.type must be a string", FT_ERR_INVALID_ARGUMENT);
    const std::string type = type_j.get<std::string>();
    try {
        if (type == "BPE") return make_bpe(file, j);
        if (type == "Unigram") return make_unigram(file, j);
    } catch (const json::exception& e) {
        // A key of the wrong type or missing deeper in: name the file, not only the JSON library.
        throw Error(file.string() + ": unexpected tokenizer.json structure (" + utf8_lossy(e.what()) + ")",
                    FT_ERR_INVALID_ARGUMENT);
    }
    unsupported(file, "model type '" + utf8_lossy(type) + "'");
}

void unsupported(const fs::path& file, const std::string& what) {
    throw Error(file.string() + ": " + what + " is not supported", FT_ERR_UNSUPPORTED);
}

void append_utf8(std::string& s, uint32_t cp) {
    utf8proc_uint8_t buf[4];
    const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
    s.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::vector<std::pair<uint32_t, size_t>> code_points(std::string_view s) {
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

std::string byte_fallback_token(unsigned char c) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", c);
    return name;
}

size_t utf8_length(unsigned char lead) {
    return lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

bool is_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// ---- Regex ----

struct Regex::Code {
    pcre2_code* re = nullptr;
};

Regex::Regex(const std::string& pattern, const fs::path& file) : code_(new Code) {
    int code = 0;
    PCRE2_SIZE at = 0;
    code_->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &code,
                              &at, nullptr);
    if (!code_->re) {
        delete code_;
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        throw Error(file.string() + ": regex '" + pattern + "' does not compile at " + std::to_string(at) + ": " +
                        reinterpret_cast<const char*>(msg),
                    FT_ERR_UNSUPPORTED);
    }
}

Regex::~Regex() {
    pcre2_code_free(code_->re);
    delete code_;
}

std::vector<std::pair<size_t, size_t>> Regex::matches(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->re, nullptr);
    size_t pos = 0;
    while (pos <= text.size()) {
        const int rc =
            pcre2_match(code_->re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, md, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t b = ov[0], e = ov[1];
        if (e == b) {  // empty match: step one code point
            pos = b + 1;
            while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
            continue;
        }
        out.emplace_back(b, e);
        pos = e;
    }
    pcre2_match_data_free(md);
    return out;
}

std::vector<std::string> Regex::split(const std::string& text) const {
    std::vector<std::string> out;
    size_t gap_start = 0;
    for (const auto& [b, e] : matches(text)) {
        if (b > gap_start) out.push_back(text.substr(gap_start, b - gap_start));
        out.push_back(text.substr(b, e - b));
        gap_start = e;
    }
    if (gap_start < text.size()) out.push_back(text.substr(gap_start));
    return out;
}

// ---- AddedVocabulary ----

void AddedVocabulary::load(const json& added_tokens, const fs::path& file) {
    tokens_.clear();
    if (added_tokens.is_array())
        for (const auto& t : added_tokens) {
            if (t.value("single_word", false)) unsupported(file, "added token option single_word");
            AddedToken a;
            a.content = t.at("content").get<std::string>();
            a.id = t.at("id").get<int64_t>();
            a.special = t.value("special", false);
            a.normalized = t.value("normalized", false);
            a.lstrip = t.value("lstrip", false);
            a.rstrip = t.value("rstrip", false);
            tokens_.push_back(std::move(a));
        }
    index();
}

void AddedVocabulary::index() {
    for (auto& v : by_first_byte_) v.clear();
    by_id_.clear();
    by_content_.clear();
    for (size_t i = 0; i < tokens_.size(); ++i) {
        by_id_.emplace(tokens_[i].id, i);  // the first one, as a linear search finds it
        by_content_.emplace(tokens_[i].content, i);
        if (!tokens_[i].content.empty())
            by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    }
    for (auto& v : by_first_byte_)
        std::stable_sort(v.begin(), v.end(),
                         [&](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

const AddedToken* AddedVocabulary::find(int64_t id) const {
    const auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find(const std::string& content) const {
    const auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<Segment> AddedVocabulary::split(std::string_view text, bool normalized) const {
    std::vector<Segment> out;
    size_t done = 0, i = 0;  // text before `done` is in `out`
    while (i < text.size()) {
        const AddedToken* hit = nullptr;
        for (size_t k : by_first_byte_[static_cast<unsigned char>(text[i])]) {
            const AddedToken& a = tokens_[k];
            if (a.normalized == normalized && text.compare(i, a.content.size(), a.content) == 0) {
                hit = &a;
                break;
            }
        }
        if (!hit) {
            ++i;
            continue;
        }
        size_t start = i, stop = i + hit->content.size();
        if (hit->lstrip) {  // whitespace before the token, back to the previous token at most
            size_t b = start;
            while (b > done) {
                size_t p = b - 1;
                while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
                const auto cp = code_points(text.substr(p, b - p));
                if (cp.size() != 1 || !is_whitespace(cp[0].first)) break;
                b = p;
            }
            start = b;
        }
        if (hit->rstrip)
            while (stop < text.size()) {
                const size_t n = std::min(utf8_length(static_cast<unsigned char>(text[stop])), text.size() - stop);
                const auto cp = code_points(text.substr(stop, n));
                if (cp.empty() || !is_whitespace(cp[0].first)) break;
                stop += n;
            }
        if (start > done) out.push_back({done, start, nullptr});
        out.push_back({start, stop, hit});
        done = i = stop;
    }
    if (done < text.size()) out.push_back({done, text.size(), nullptr});
    return out;
}

// ---- PostProcessor ----

void PostProcessor::load(const json& p, const fs::path& file) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    if (type == "ByteLevel") return;  // offsets only
    if (type == "Sequence") {
        for (const auto& x : p.at("processors")) load(x, file);
        return;
    }
    if (type != "TemplateProcessing") unsupported(file, "post-processor type '" + type + "'");
    parts_.clear();
    for (const auto& piece : p.at("single")) {
        Part part;
        if (piece.contains("Sequence")) {
            part.is_sequence = true;
        } else {
            const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
            part.ids = p.at("special_tokens").at(name).at("ids").get<std::vector<int64_t>>();
        }
        parts_.push_back(part);
    }
}

std::vector<int64_t> PostProcessor::apply(const std::vector<int64_t>& ids) const {
    if (parts_.empty()) return ids;
    std::vector<int64_t> out;
    for (const auto& part : parts_)
        if (part.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
        else out.insert(out.end(), part.ids.begin(), part.ids.end());
    return out;
}

}  // namespace tokenizer_json
}  // namespace fthost::host
