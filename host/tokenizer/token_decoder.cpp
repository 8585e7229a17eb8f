#include "tokenizer/token_decoder.hpp"

#include <fthost/plugin.hpp>

#include <cstdlib>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host::tokenizer_json {
namespace {

// "<0xNN>" -> the byte, as tokenizers reads a byte-fallback token.
bool byte_token(const std::string& t, unsigned char& out) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
    char* end = nullptr;
    const std::string hex = t.substr(3, 2);
    const long v = std::strtol(hex.c_str(), &end, 16);
    if (end != hex.c_str() + 2) return false;
    out = static_cast<unsigned char>(v);
    return true;
}

bool valid_utf8(const std::string& s) { return utf8_lossy(s) == s; }

std::vector<std::string> fallback_bytes(const std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string bytes;
    size_t count = 0;
    const auto flush = [&] {
        if (count == 0) return;
        if (valid_utf8(bytes)) out.push_back(bytes);
        else
            for (size_t k = 0; k < count; ++k) out.push_back("\xEF\xBF\xBD");
        bytes.clear();
        count = 0;
    };
    for (const auto& t : tokens) {
        unsigned char b = 0;
        if (byte_token(t, b)) {
            bytes.push_back(static_cast<char>(b));
            ++count;
            continue;
        }
        flush();
        out.push_back(t);
    }
    flush();
    return out;
}

std::string strip(const std::string& t, uint32_t c, size_t start, size_t stop) {
    const auto cps = code_points(t);
    size_t b = 0, e = cps.size();
    while (b < e && b < start && cps[b].first == c) ++b;
    while (e > b && cps.size() - e < stop && cps[e - 1].first == c) --e;
    const size_t from = b < cps.size() ? cps[b].second : t.size();
    const size_t to = e < cps.size() ? cps[e].second : t.size();
    return t.substr(from, to - from);
}

}  // namespace

TokenDecoder::TokenDecoder(const json& decoder, const fs::path& file) {
    if (decoder.is_null()) return;
    none_ = false;
    load(decoder, file);
}

void TokenDecoder::load(const json& d, const fs::path& file) {
    const std::string type = d.value("type", "");
    Step s{};
    if (type == "Sequence") {
        for (const auto& x : d.at("decoders")) load(x, file);
        return;
    } else if (type == "Replace") {
        s.kind = Step::replace;
        s.pattern = pattern_regex(d.at("pattern"), file);
        s.content = d.at("content").get<std::string>();
    } else if (type == "ByteFallback") {
        s.kind = Step::byte_fallback;
    } else if (type == "Fuse") {
        s.kind = Step::fuse;
    } else if (type == "Strip") {
        s.kind = Step::strip;
        s.character = single_char(d, "content", file);
        s.start = d.value("start", size_t{0});
        s.stop = d.value("stop", size_t{0});
    } else if (type == "Metaspace") {
        s.kind = Step::metaspace;
        s.character = single_char(d, "replacement", file);
        s.prepend = prepend_scheme(d, file);
    } else {
        unsupported(file, "decoder type '" + type + "'");
    }
    steps_.push_back(std::move(s));
}

std::string TokenDecoder::decode(std::vector<std::string> tokens) const {
    std::string out;
    if (none_) {
        for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
        return out;
    }
    for (const auto& s : steps_) switch (s.kind) {
            case Step::replace:
                for (auto& t : tokens) {
                    std::string r;
                    size_t last = 0;
                    for (const auto& [b, e] : s.pattern->matches(t)) r += t.substr(last, b - last) + s.content, last = e;
                    t = r + t.substr(last);
                }
                break;
            case Step::byte_fallback: tokens = fallback_bytes(tokens); break;
            case Step::fuse: {
                std::string all;
                for (const auto& t : tokens) all += t;
                tokens = {all};
                break;
            }
            case Step::strip:
                for (auto& t : tokens) t = strip(t, s.character, s.start, s.stop);
                break;
            case Step::metaspace:
                for (size_t i = 0; i < tokens.size(); ++i) {
                    std::string r;
                    for (const auto& [c, _] : code_points(tokens[i])) {
                        if (c != s.character) append_utf8(r, c);
                        else if (i != 0 || s.prepend == Prepend::never) r += ' ';
                    }
                    tokens[i] = r;
                }
                break;
        }
    for (const auto& t : tokens) out += t;
    return out;
}

}  // namespace fthost::host::tokenizer_json
