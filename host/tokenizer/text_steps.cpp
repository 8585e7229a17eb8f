#include "tokenizer/text_steps.hpp"

#include <fthost/plugin.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host::tokenizer_json {
namespace {
const uint32_t kSpace = 0x20;
}

Prepend prepend_scheme(const json& j, const fs::path& file) {
    if (j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() && !j["add_prefix_space"].get<bool>())
        return Prepend::never;
    const std::string s = j.value("prepend_scheme", "always");
    if (s == "always") return Prepend::always;
    if (s == "first") return Prepend::first;
    if (s == "never") return Prepend::never;
    unsupported(file, "Metaspace prepend_scheme '" + s + "'");
}

uint32_t single_char(const json& j, const char* key, const fs::path& file) {
    const std::string s = j.value(key, "\xE2\x96\x81");
    const auto cps = code_points(s);
    if (cps.size() != 1) unsupported(file, std::string(key) + " '" + s + "' (not one character)");
    return cps[0].first;
}

std::shared_ptr<Regex> pattern_regex(const json& pat, const fs::path& file) {
    return std::make_shared<Regex>(
        pat.contains("Regex") ? pat["Regex"].get<std::string>() : "\\Q" + pat.at("String").get<std::string>() + "\\E", file);
}

std::vector<int64_t> TextSteps::encode(const std::string& text, const AddedVocabulary& added, std::vector<size_t>* starts,
                                       const std::function<void(const std::string&, const Emit&)>& segment) const {
    std::vector<int64_t> ids;
    const auto emit = [&](int64_t id, size_t at) {
        ids.push_back(id);
        if (starts) starts->push_back(at);
    };
    for (const auto& seg : added.split(text, false)) {
        if (seg.token) {
            emit(seg.token->id, seg.begin);
            continue;
        }
        NormalizedString ns(text, seg.begin, seg.end);
        normalize(ns);
        for (const auto& nseg : added.split(ns.get(), true)) {
            if (nseg.token) {
                emit(nseg.token->id, ns.original_at(nseg.begin));
                continue;
            }
            for (const auto& piece : pre_tokenize(ns.slice(nseg.begin, nseg.end)))
                segment(piece.get(), [&](int64_t id, size_t b) { emit(id, piece.original_at(b)); });
        }
    }
    return ids;
}

void TextSteps::load_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = n.value("type", "");
    Normalizer x{};
    if (type == "Sequence") {
        for (const auto& y : n.at("normalizers")) load_normalizer(y);
        return;
    } else if (type == "Precompiled") {
        x.kind = Normalizer::precompiled;
        const json& b64 = n.value("precompiled_charsmap", json());
        if (b64.is_null()) return;  // tokenizers: no charsmap, no change
        x.charsmap = std::make_shared<PrecompiledCharsmap>(PrecompiledCharsmap::decode_base64(b64.get<std::string>(), file_),
                                                           file_);
    } else if (type == "Replace") {
        x.kind = Normalizer::replace;
        x.regex = pattern_regex(n.at("pattern"), file_);
        x.content = n.at("content").get<std::string>();
    } else if (type == "Prepend") {
        x.kind = Normalizer::prepend;
        x.content = n.at("prepend").get<std::string>();
    } else if (type == "Strip") {
        x.kind = Normalizer::strip;
        x.left = n.value("strip_left", false);
        x.right = n.value("strip_right", false);
    } else {
        unsupported(file_, "normalizer type '" + type + "'");
    }
    normalizers_.push_back(std::move(x));
}

void TextSteps::load_pre_tokenizer(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    PreTokenizer x{};
    if (type == "Sequence") {
        for (const auto& y : p.at("pretokenizers")) load_pre_tokenizer(y);
        return;
    } else if (type == "WhitespaceSplit") {
        x.kind = PreTokenizer::split;
        x.whitespace = true;
    } else if (type == "Metaspace") {
        x.kind = PreTokenizer::metaspace;
        x.character = single_char(p, "replacement", file_);
        x.prepend = prepend_scheme(p, file_);
        x.split_on_replacement = p.value("split", true);
    } else if (type == "Split") {
        const json& pat = p.at("pattern");
        if (!pat.contains("String")) unsupported(file_, "Split on a regex (in a tokenizer converted from SentencePiece)");
        x.kind = PreTokenizer::split;
        x.character = single_char(pat, "String", file_);
        const std::string b = p.value("behavior", "");
        if (b == "Removed") x.delimiter = NormalizedString::Delimiter::removed;
        else if (b == "MergedWithPrevious") x.delimiter = NormalizedString::Delimiter::merged_with_previous;
        else if (b == "MergedWithNext") x.delimiter = NormalizedString::Delimiter::merged_with_next;
        else unsupported(file_, "Split behaviour '" + b + "' (in a tokenizer converted from SentencePiece)");
        if (p.value("invert", false)) unsupported(file_, "inverted Split");
    } else {
        unsupported(file_, "pre-tokenizer type '" + type + "'");
    }
    pre_tokenizers_.push_back(x);
}

void TextSteps::normalize(NormalizedString& s) const {
    for (const auto& n : normalizers_) switch (n.kind) {
            case Normalizer::precompiled: n.charsmap->normalize(s); break;
            case Normalizer::replace: s.replace(n.regex->matches(s.get()), n.content); break;
            case Normalizer::prepend: s.prepend(n.content); break;
            case Normalizer::strip: s.strip(n.left, n.right); break;
        }
}

std::vector<NormalizedString> TextSteps::pre_tokenize(NormalizedString s) const {
    std::vector<NormalizedString> pieces;
    pieces.push_back(std::move(s));
    for (const auto& p : pre_tokenizers_) {
        std::vector<NormalizedString> next;
        for (auto& piece : pieces) {
            if (p.kind == PreTokenizer::split) {
                const uint32_t c = p.character;
                auto is_delimiter = p.whitespace ? std::function<bool(uint32_t)>(is_whitespace)
                                                 : std::function<bool(uint32_t)>([c](uint32_t x) { return x == c; });
                for (auto& q : piece.split(is_delimiter, p.whitespace ? NormalizedString::Delimiter::removed : p.delimiter))
                    next.push_back(std::move(q));
                continue;
            }
            std::string rep;
            append_utf8(rep, p.character);
            std::vector<std::pair<size_t, size_t>> spaces;
            for (const auto& [c, at] : code_points(piece.get()))
                if (c == kSpace) spaces.emplace_back(at, at + 1);
            piece.replace(spaces, rep);
            const bool starts_with_rep = piece.get().compare(0, rep.size(), rep) == 0;
            if (!starts_with_rep && (p.prepend == Prepend::always || (p.prepend == Prepend::first && piece.original_begin() == 0)))
                piece.prepend(rep);
            if (!p.split_on_replacement) {
                if (!piece.empty()) next.push_back(std::move(piece));
                continue;
            }
            const uint32_t r = p.character;
            for (auto& q : piece.split([r](uint32_t c) { return c == r; }, NormalizedString::Delimiter::merged_with_next))
                next.push_back(std::move(q));
        }
        pieces = std::move(next);
    }
    if (pieces.size() == 1 && pieces[0].empty()) pieces.clear();
    return pieces;
}

}  // namespace fthost::host::tokenizer_json
