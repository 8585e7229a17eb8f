#include "tokenizer/precompiled_charsmap.hpp"

#include "tokenizer/tokenizer_json.hpp"

#include <fthost/plugin.hpp>

#include <utf8proc.h>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

// darts-clone's unit: bit 8 a leaf below, the label in bits 0-7 (and 31), the offset to
// the children in bits 10-31 (shifted by 8 more when bit 9 is set), a leaf's value in 0-30.
bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
uint32_t value(uint32_t u) { return u & ((1u << 31) - 1); }
uint32_t label(uint32_t u) { return u & ((1u << 31) | 0xFF); }
uint32_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

}  // namespace

std::string PrecompiledCharsmap::decode_base64(const std::string& text, const fs::path& file) {
    auto bad = [&] { return Error(file.string() + ": precompiled_charsmap is not base64", FT_ERR_INVALID_ARGUMENT); };
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    size_t padding = 0;
    for (char ch : text) {
        int v;
        if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
        else if (ch == '+') v = 62;
        else if (ch == '/') v = 63;
        else if (ch == '=') {
            ++padding;
            continue;
        } else throw bad();
        if (padding) throw bad();
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    if ((text.size() % 4) != 0 || padding > 2) throw bad();
    return out;
}

PrecompiledCharsmap::PrecompiledCharsmap(const std::string& bytes, const fs::path& file) {
    auto bad = [&](const std::string& why) {
        return Error(file.string() + ": precompiled_charsmap " + why, FT_ERR_INVALID_ARGUMENT);
    };
    if (bytes.size() < 4) throw bad("is too short");
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const size_t trie_bytes = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<size_t>(p[3]) << 24);
    if (trie_bytes / 4 * 4 + 4 > bytes.size() || trie_bytes < 4) throw bad("has a trie longer than itself");
    units_.resize(trie_bytes / 4);
    for (size_t i = 0; i < units_.size(); ++i) {
        const unsigned char* u = p + 4 + 4 * i;
        units_[i] = u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<uint32_t>(u[3]) << 24);
    }
    pool_ = bytes.substr(4 + units_.size() * 4);
    if (utf8proc_decompose(reinterpret_cast<const utf8proc_uint8_t*>(pool_.data()),
                           static_cast<utf8proc_ssize_t>(pool_.size()), nullptr, 0, UTF8PROC_STABLE) < 0)
        throw bad("holds replacements that are not UTF-8");
}

std::vector<std::string_view> PrecompiledCharsmap::prefix_matches(std::string_view key) const {
    std::vector<std::string_view> out;
    size_t pos = offset(units_[0]);
    for (unsigned char c : key) {
        if (c == 0) break;
        pos ^= c;
        if (pos >= units_.size() || label(units_[pos]) != c) break;
        const uint32_t u = units_[pos];
        pos ^= offset(u);
        if (has_leaf(u)) {
            if (pos >= units_.size()) break;
            const size_t v = value(units_[pos]);
            if (v > pool_.size()) continue;
            const size_t end = pool_.find('\0', v);
            out.emplace_back(pool_.data() + v, (end == std::string::npos ? pool_.size() : end) - v);
        }
    }
    return out;
}

void PrecompiledCharsmap::normalize(NormalizedString& s) const {
    using Change = NormalizedString::Change;
    const std::string& text = s.get();
    const auto cps = tokenizer_json::code_points(text);
    std::vector<Change> dest;
    bool modified = false;
    // Replaces `old_chars` characters by `repl`: the last ones inserted when it is longer,
    // the removal recorded on the last change so far when it is shorter.
    auto replace = [&](size_t old_chars, std::string_view repl) {
        const auto now = tokenizer_json::code_points(repl);
        for (const auto& [c, _] : now) dest.emplace_back(c, 0);
        const int64_t diff = static_cast<int64_t>(now.size()) - static_cast<int64_t>(old_chars);
        if (diff > 0)
            for (int64_t k = 0; k < diff; ++k) dest[dest.size() - 1 - static_cast<size_t>(k)].second = 1;
        else if (diff < 0 && !dest.empty())
            dest.back().second += diff;
    };
    utf8proc_int32_t state = 0;
    for (size_t g = 0; g < cps.size();) {
        size_t h = g + 1;  // the cluster is cps[g, h)
        while (h < cps.size() &&
               !utf8proc_grapheme_break_stateful(static_cast<utf8proc_int32_t>(cps[h - 1].first),
                                                 static_cast<utf8proc_int32_t>(cps[h].first), &state))
            ++h;
        state = 0;
        const size_t begin = cps[g].second, end = h < cps.size() ? cps[h].second : text.size();
        const std::string_view cluster(text.data() + begin, end - begin);
        if (cluster.size() < 6) {
            const auto m = prefix_matches(cluster);
            if (!m.empty()) {
                modified = true;
                replace(h - g, m.front());
                g = h;
                continue;
            }
        }
        for (size_t k = g; k < h; ++k) {
            const size_t b = cps[k].second, e = k + 1 < cps.size() ? cps[k + 1].second : text.size();
            const auto m = prefix_matches(std::string_view(text.data() + b, e - b));
            if (!m.empty()) {
                modified = true;
                replace(1, m.front());
            } else {
                dest.emplace_back(cps[k].first, 0);
            }
        }
        g = h;
    }
    if (modified) s.transform(dest, 0);
}

}  // namespace fthost::host
