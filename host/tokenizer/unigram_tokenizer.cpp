// Hugging Face tokenizer.json with a Unigram model (T5, FLAN-T5, mT5: what transformers'
// T5 converter writes), as the `tokenizers` library runs it:
//   1. added tokens (</s>, <pad>, <unk>, <extra_id_N>) are cut out of the raw text first
//      (tokenizer_json.hpp), lstrip/rstrip as the file says;
//   2. the rest is normalised, alignments kept (normalized_string.hpp): Precompiled (the
//      SentencePiece charsmap, precompiled_charsmap.hpp), Replace (a string or a PCRE2
//      regex), Strip, in a Sequence or alone (what transformers 4 and 5 write for T5);
//   3. pre-tokenised: WhitespaceSplit, Metaspace (spaces become the replacement, "▁", which
//      is prepended per prepend_scheme always / first / never, and split on);
//   4. each piece is segmented by Viterbi over the vocabulary's scores (tokenizers'
//      encode_optimized: ties go to the first candidate; a character no piece covers is
//      <unk> with score min - 10, runs of them fused into one token, or bytes <0xNN> with
//      byte_fallback);
//   5. a TemplateProcessing post-processor appends </s>.
// Decoding: the Metaspace decoder ("▁" -> " ", dropped in the first token). Offsets are
// where tokenizers puts them: the original byte each token's first normalised byte came
// from. Other normalisers, pre-tokenisers and decoders are an error naming the file and
// the type.
#include "tokenizer/normalized_string.hpp"
#include "tokenizer/precompiled_charsmap.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/tokenizer_json.hpp"

#include <fthost/plugin.hpp>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <optional>
#include <unordered_map>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fthost::host {
namespace {

using namespace tokenizer_json;

const uint32_t kSpace = 0x20;

enum class Prepend { always, first, never };

// Metaspace's prepend_scheme, or the older add_prefix_space (false = never).
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
    if (cps.size() != 1) unsupported(file, std::string("Metaspace ") + key + " '" + s + "' (not one character)");
    return cps[0].first;
}

// A byte trie over the vocabulary: the pieces that are prefixes of a text, shortest first.
class PieceTrie {
public:
    void add(const std::string& piece, int64_t id) {
        size_t node = 0;
        for (unsigned char c : piece) {
            auto& kids = nodes_[node].kids;
            auto it = std::lower_bound(kids.begin(), kids.end(), c, [](const auto& k, unsigned char x) { return k.first < x; });
            if (it == kids.end() || it->first != c) {
                it = kids.insert(it, {c, nodes_.size()});
                nodes_.emplace_back();
            }
            node = it->second;
        }
        nodes_[node].id = id;
    }
    // (length, id) of every piece that text[pos..] starts with.
    void prefixes(std::string_view text, size_t pos, std::vector<std::pair<size_t, int64_t>>& out) const {
        out.clear();
        size_t node = 0;
        for (size_t i = pos; i < text.size(); ++i) {
            const auto& kids = nodes_[node].kids;
            const unsigned char c = static_cast<unsigned char>(text[i]);
            auto it = std::lower_bound(kids.begin(), kids.end(), c, [](const auto& k, unsigned char x) { return k.first < x; });
            if (it == kids.end() || it->first != c) return;
            node = it->second;
            if (nodes_[node].id >= 0) out.emplace_back(i + 1 - pos, nodes_[node].id);
        }
    }

private:
    struct Node {
        std::vector<std::pair<unsigned char, size_t>> kids;
        int64_t id = -1;
    };
    std::vector<Node> nodes_ = std::vector<Node>(1);
};

class UnigramTokenizer : public Tokenizer {
public:
    UnigramTokenizer(const fs::path& file, const json& j) : file_(file) {
        load_model(j.at("model"));
        added_.load(j.value("added_tokens", json()), file);
        for (const auto& a : added_.tokens()) vocab_size_ = std::max(vocab_size_, a.id + 1);
        load_normalizer(j.value("normalizer", json()));
        load_pre_tokenizer(j.value("pre_tokenizer", json()));
        post_.load(j.value("post_processor", json()), file);
        const json dec = j.value("decoder", json());
        if (!dec.is_null()) {
            if (dec.value("type", "") != "Metaspace") unsupported(file, "decoder type '" + dec.value("type", "") + "'");
            decoder_ = Metaspace{single_char(dec, "replacement", file), prepend_scheme(dec, file), true};
        }
    }

    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<int64_t> ids = run(text, nullptr);
        return add_special_tokens ? post_.apply(ids) : ids;
    }

    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        starts.clear();
        return run(text, &starts);
    }

    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
        std::vector<std::string> tokens;
        for (int64_t id : ids) {
            if (const AddedToken* a = added_.find(id)) {
                if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
                continue;
            }
            if (id < 0 || id >= static_cast<int64_t>(pieces_.size()))
                throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
            tokens.push_back(pieces_[static_cast<size_t>(id)].first);
        }
        if (!decoder_) {  // tokenizers joins the tokens with spaces when there is no decoder
            std::string out;
            for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
            return utf8_lossy(out);
        }
        std::string out;
        for (size_t i = 0; i < tokens.size(); ++i)
            for (const auto& [c, _] : code_points(tokens[i])) {
                if (c != decoder_->replacement) append_utf8(out, c);
                else if (i != 0 || decoder_->prepend == Prepend::never) out += ' ';
            }
        return utf8_lossy(out);
    }

    int64_t vocab_size() const override { return vocab_size_; }

    std::optional<int64_t> token_to_id(const std::string& token) const override {
        if (const AddedToken* a = added_.find(token)) return a->id;
        auto it = piece_id_.find(token);
        if (it == piece_id_.end()) return std::nullopt;
        return it->second;
    }

private:
    struct Normalizer {
        enum Kind { precompiled, replace, strip } kind;
        std::shared_ptr<PrecompiledCharsmap> charsmap;
        std::shared_ptr<Regex> regex;  // Replace
        std::string content;           // Replace's replacement
        bool left = false, right = false;
    };
    struct Metaspace {
        uint32_t replacement;
        Prepend prepend;
        bool split;
    };
    struct PreTokenizer {
        bool whitespace_split = false;  // else Metaspace
        Metaspace metaspace{};
    };

    void load_model(const json& m) {
        if (m.value("type", "") != "Unigram") unsupported(file_, "model type '" + m.value("type", "") + "'");
        if (!m.value("unk_id", json()).is_null()) unk_id_ = m["unk_id"].get<int64_t>();
        byte_fallback_ = m.value("byte_fallback", false);
        for (const auto& v : m.at("vocab")) {
            pieces_.emplace_back(v.at(0).get<std::string>(), v.at(1).get<double>());
            min_score_ = std::min(min_score_, pieces_.back().second);
        }
        if (unk_id_ && (*unk_id_ < 0 || *unk_id_ >= static_cast<int64_t>(pieces_.size())))
            throw Error(file_.string() + ": Unigram unk_id " + std::to_string(*unk_id_) + " is outside the vocabulary",
                        FT_ERR_INVALID_ARGUMENT);
        for (size_t id = 0; id < pieces_.size(); ++id) piece_id_[pieces_[id].first] = static_cast<int64_t>(id);  // last wins
        for (const auto& [piece, id] : piece_id_)
            if (!piece.empty()) trie_.add(piece, id);
        vocab_size_ = static_cast<int64_t>(pieces_.size());
    }

    void load_normalizer(const json& n) {
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
            x.charsmap = std::make_shared<PrecompiledCharsmap>(
                PrecompiledCharsmap::decode_base64(b64.get<std::string>(), file_), file_);
        } else if (type == "Replace") {
            x.kind = Normalizer::replace;
            const json& pat = n.at("pattern");
            const std::string re = pat.contains("Regex") ? pat["Regex"].get<std::string>()
                                                         : "\\Q" + pat.at("String").get<std::string>() + "\\E";
            x.regex = std::make_shared<Regex>(re, file_);
            x.content = n.at("content").get<std::string>();
        } else if (type == "Strip") {
            x.kind = Normalizer::strip;
            x.left = n.value("strip_left", false);
            x.right = n.value("strip_right", false);
        } else {
            unsupported(file_, "normalizer type '" + type + "'");
        }
        normalizers_.push_back(std::move(x));
    }

    void load_pre_tokenizer(const json& p) {
        if (p.is_null()) return;
        const std::string type = p.value("type", "");
        if (type == "Sequence") {
            for (const auto& x : p.at("pretokenizers")) load_pre_tokenizer(x);
        } else if (type == "WhitespaceSplit") {
            pre_tokenizers_.push_back({true, {}});
        } else if (type == "Metaspace") {
            pre_tokenizers_.push_back(
                {false, {single_char(p, "replacement", file_), prepend_scheme(p, file_), p.value("split", true)}});
        } else {
            unsupported(file_, "pre-tokenizer type '" + type + "'");
        }
    }

    void normalize(NormalizedString& s) const {
        for (const auto& n : normalizers_) switch (n.kind) {
                case Normalizer::precompiled: n.charsmap->normalize(s); break;
                case Normalizer::replace: s.replace(n.regex->matches(s.get()), n.content); break;
                case Normalizer::strip: s.strip(n.left, n.right); break;
            }
    }

    std::vector<NormalizedString> pre_tokenize(NormalizedString s) const {
        std::vector<NormalizedString> pieces;
        pieces.push_back(std::move(s));
        for (const auto& p : pre_tokenizers_) {
            std::vector<NormalizedString> next;
            for (auto& piece : pieces) {
                if (p.whitespace_split) {
                    for (auto& q : piece.split(is_whitespace, NormalizedString::Delimiter::removed)) next.push_back(std::move(q));
                    continue;
                }
                const Metaspace& m = p.metaspace;
                std::string rep;
                append_utf8(rep, m.replacement);
                std::vector<std::pair<size_t, size_t>> spaces;
                for (const auto& [c, at] : code_points(piece.get()))
                    if (c == kSpace) spaces.emplace_back(at, at + 1);
                piece.replace(spaces, rep);
                const bool starts_with_rep = piece.get().compare(0, rep.size(), rep) == 0;
                if (!starts_with_rep && (m.prepend == Prepend::always || (m.prepend == Prepend::first && piece.original_begin() == 0)))
                    piece.prepend(rep);
                if (!m.split) {
                    if (!piece.empty()) next.push_back(std::move(piece));
                    continue;
                }
                const uint32_t r = m.replacement;
                for (auto& q : piece.split([r](uint32_t c) { return c == r; }, NormalizedString::Delimiter::merged_with_next))
                    next.push_back(std::move(q));
            }
            pieces = std::move(next);
        }
        if (pieces.size() == 1 && pieces[0].empty()) pieces.clear();
        return pieces;
    }

    // Steps 1-4 of the file comment; with `starts`, each token's original byte offset.
    std::vector<int64_t> run(const std::string& text, std::vector<size_t>* starts) const {
        std::vector<int64_t> ids;
        auto emit = [&](int64_t id, size_t at) {
            ids.push_back(id);
            if (starts) starts->push_back(at);
        };
        for (const auto& seg : added_.split(text, false)) {
            if (seg.token) {
                emit(seg.token->id, seg.begin);
                continue;
            }
            NormalizedString ns(text, seg.begin, seg.end);
            normalize(ns);
            for (const auto& nseg : added_.split(ns.get(), true)) {
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

    // tokenizers' Unigram::encode_optimized and tokenize: the best path's tokens (fusing
    // runs of unknown characters), each as its id(s) and normalised start.
    template <class Emit>
    void segment(const std::string& s, Emit&& emit) const {
        if (s.empty()) return;
        struct Best {
            int64_t id = 0;
            double score = 0.0;
            int64_t from = -1;  // where the best path's last token starts; -1: none yet
        };
        std::vector<Best> best(s.size() + 1);
        const double unk_score = min_score_ - 10.0;
        std::vector<std::pair<size_t, int64_t>> found;
        for (size_t at = 0; at < s.size();) {
            const double here = best[at].score;
            const size_t len = std::min(utf8_length(static_cast<unsigned char>(s[at])), s.size() - at);
            bool single = false;
            trie_.prefixes(s, at, found);
            for (const auto& [n, id] : found) {
                Best& t = best[at + n];
                const double score = pieces_[static_cast<size_t>(id)].second + here;
                if (t.from < 0 || score > t.score) t = {id, score, static_cast<int64_t>(at)};
                if (n == len) single = true;
            }
            if (!single) {
                if (!unk_id_) throw Error(file_.string() + ": the text has a character no piece covers and there is no unk_id");
                Best& t = best[at + len];
                const double score = unk_score + here;
                if (t.from < 0 || score > t.score) t = {*unk_id_, score, static_cast<int64_t>(at)};
            }
            at += len;
        }
        // Back from the end; adjacent unknowns become one token.
        std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) in s, in reverse
        std::optional<std::pair<size_t, size_t>> unk_run;
        for (size_t end = s.size(); end > 0;) {
            const Best& b = best[end];
            const size_t begin = static_cast<size_t>(b.from);
            if (unk_id_ && b.id == *unk_id_) {
                unk_run = unk_run ? std::make_pair(begin, unk_run->second) : std::make_pair(begin, end);
            } else {
                if (unk_run) spans.push_back(*unk_run), unk_run.reset();
                spans.emplace_back(begin, end);
            }
            end = begin;
        }
        if (unk_run) spans.push_back(*unk_run);
        for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
            const std::string piece = s.substr(it->first, it->second - it->first);
            auto found_id = piece_id_.find(piece);
            if (found_id != piece_id_.end()) {
                emit(found_id->second, it->first);
                continue;
            }
            if (byte_fallback_) {
                std::vector<int64_t> bytes;
                for (unsigned char c : piece) {
                    char name[8];
                    std::snprintf(name, sizeof name, "<0x%02X>", c);
                    auto b = piece_id_.find(name);
                    if (b == piece_id_.end()) break;
                    bytes.push_back(b->second);
                }
                if (bytes.size() == piece.size()) {
                    for (int64_t id : bytes) emit(id, it->first);
                    continue;
                }
            }
            emit(*unk_id_, it->first);
        }
    }

    fs::path file_;
    std::vector<std::pair<std::string, double>> pieces_;  // id -> (piece, score)
    std::unordered_map<std::string, int64_t> piece_id_;
    PieceTrie trie_;
    std::optional<int64_t> unk_id_;
    double min_score_ = std::numeric_limits<double>::infinity();
    bool byte_fallback_ = false;
    int64_t vocab_size_ = 0;
    AddedVocabulary added_;
    std::vector<Normalizer> normalizers_;
    std::vector<PreTokenizer> pre_tokenizers_;
    PostProcessor post_;
    std::optional<Metaspace> decoder_;
};

}  // namespace

namespace tokenizer_json {
std::unique_ptr<Tokenizer> make_unigram(const fs::path& file, const json& j) {
    return std::make_unique<UnigramTokenizer>(file, j);
}
}  // namespace tokenizer_json

}  // namespace fthost::host
