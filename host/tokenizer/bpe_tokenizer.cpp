// Hugging Face tokenizer.json with a BPE model, as the `tokenizers` library runs it.
// Byte-level files (GPT-2, Llama 3, Qwen2):
//   1. added tokens (special ones included) are cut out of the raw text first, longest
//      match leftmost, with the whitespace their lstrip/rstrip take; they become their
//      own ids (tokenizer_json.hpp);
//   2. the rest is normalised (none, NFC — through utf8proc);
//   3. pre-tokenised: Split by a regex (PCRE2 with Unicode properties, the pattern taken
//      verbatim from the file) and/or ByteLevel (GPT-2's regex, bytes mapped to printable
//      code points);
//   4. each piece is merged by BPE rank (lowest first, leftmost on ties), or taken whole
//      when ignore_merges is set and the piece is a token;
//   5. a TemplateProcessing post-processor adds e.g. <|begin_of_text|>.
// Decoding maps byte-level code points back to bytes (ByteLevel decoder).
// Files without a ByteLevel step are SentencePiece conversions (Llama 2, Mistral, Phi-3,
// Gemma): steps 2-3 are text_steps.hpp's (Prepend, Replace, Metaspace, ...) with
// alignments, a character the vocabulary lacks becomes its <0xNN> bytes (byte_fallback)
// or the unk token, and decoding is token_decoder.hpp's. Anything else in the file is an
// error naming it.
#include "tokenizer/normalized_string.hpp"
#include "tokenizer/text_steps.hpp"
#include "tokenizer/token_decoder.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer/tokenizer_json.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

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

namespace {

using namespace tokenizer_json;

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

const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class BpeTokenizer : public Tokenizer {
public:
    BpeTokenizer(const fs::path& file, const json& j) : file_(file), steps_(file) {
        load_model(j.at("model"));
        added_.load(j.value("added_tokens", json()), file);
        for (const auto& a : added_.tokens()) {
            id_to_token_[a.id] = a.content;
            token_to_id_[a.content] = a.id;
        }
        const json dec = j.value("decoder", json());
        // Without a ByteLevel step the file is a SentencePiece conversion (Llama 2,
        // Mistral, Phi-3, Gemma): its normalisers, pre-tokenisers and decoder are
        // text_steps.hpp's and token_decoder.hpp's.
        sentencepiece_ = !has_type(j.value("pre_tokenizer", json()), "ByteLevel") && !has_type(dec, "ByteLevel");
        if (sentencepiece_) {
            steps_.load_normalizer(j.value("normalizer", json()));
            steps_.load_pre_tokenizer(j.value("pre_tokenizer", json()));
            decoder_ = std::make_unique<TokenDecoder>(dec, file);
        } else {
            load_normalizer(j.value("normalizer", json()));
            load_pre_tokenizer(j.value("pre_tokenizer", json()));
            if (!dec.is_null() && dec.value("type", "") != "ByteLevel")
                unsupported(file, "decoder type '" + dec.value("type", "") + "' with a ByteLevel pre-tokenizer");
        }
        post_.load(j.value("post_processor", json()), file);
        for (const auto& [id, _] : id_to_token_) vocab_size_ = std::max(vocab_size_, id + 1);
    }

    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<int64_t> ids = sentencepiece_ ? encode_aligned(text, nullptr) : encode_pieces(text, nullptr);
        return add_special_tokens ? post_.apply(ids) : ids;
    }

    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        starts.clear();
        return sentencepiece_ ? encode_aligned(text, &starts) : encode_pieces(text, &starts);
    }

    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
        std::string bytes;
        std::vector<std::string> tokens;  // for decoder_
        for (int64_t id : ids) {
            auto it = id_to_token_.find(id);
            if (it == id_to_token_.end()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
            const AddedToken* added = added_.find(id);
            if (added && added->special && skip_special_tokens) continue;
            if (decoder_) {
                tokens.push_back(it->second);
                continue;
            }
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
        if (decoder_) bytes = decoder_->decode(std::move(tokens));
        return utf8_lossy(bytes);
    }

    int64_t vocab_size() const override { return vocab_size_; }
    std::optional<int64_t> token_to_id(const std::string& token) const override {
        auto it = token_to_id_.find(token);
        if (it == token_to_id_.end()) return std::nullopt;
        return it->second;
    }

private:
    struct Split {
        std::unique_ptr<Regex> regex;
        bool byte_level = false, add_prefix_space = false;
    };

    static bool has_type(const json& j, const char* type) {
        if (!j.is_object()) return false;
        if (j.value("type", "") == type) return true;
        for (const char* list : {"pretokenizers", "decoders"})
            if (j.contains(list) && j[list].is_array())
                for (const auto& x : j[list])
                    if (has_type(x, type)) return true;
        return false;
    }

    // A SentencePiece conversion's encoding: added tokens cut out, the rest normalised and
    // pre-tokenised with alignments (text_steps.hpp), so each token's offset is where
    // tokenizers puts it: the original byte its first normalised byte came from.
    std::vector<int64_t> encode_aligned(const std::string& text, std::vector<size_t>* starts) const {
        std::vector<Symbol> syms;
        return steps_.encode(text, added_, starts, [&](const std::string& piece, const TextSteps::Emit& emit) {
            merge(piece, syms);
            for (const auto& sym : syms) emit(sym.id, sym.start);
        });
    }

    // Steps 1-4 of the file comment. With `starts`, each token's byte offset in `text`:
    // exact when normalisation leaves a piece unchanged (byte-level tokens are one byte per
    // code point); when NFC rewrites a piece, its tokens all start at the piece's start.
    std::vector<int64_t> encode_pieces(const std::string& text, std::vector<size_t>* starts) const {
        std::vector<int64_t> ids;
        for (const auto& seg : added_.split(text, false)) {
            const size_t piece_start = seg.begin, piece_end = seg.end;
            if (seg.token) {
                ids.push_back(seg.token->id);
                if (starts) starts->push_back(piece_start);
                continue;
            }
            const std::string piece = text.substr(seg.begin, seg.end - seg.begin);
            const std::string normalized = normalize(piece);
            const bool exact = normalized == piece && byte_level_;
            for (const auto& nseg : added_.split(normalized, true)) {
                const size_t sub_start = nseg.begin;  // offset of the sub-piece in `normalized`
                if (nseg.token) {
                    ids.push_back(nseg.token->id);
                    if (starts) starts->push_back(exact ? piece_start + sub_start : piece_start);
                    continue;
                }
                const std::string npiece = normalized.substr(nseg.begin, nseg.end - nseg.begin);
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
        fuse_unk_ = m.value("fuse_unk", false);
        if (!m.value("unk_token", json()).is_null()) unk_ = m["unk_token"].get<std::string>();
        // The keys a BPE model cannot do without, named with the file when absent.
        for (const char* key : {"vocab", "merges"})
            if (!m.contains(key) || !m[key].is_structured())
                throw Error(file_.string() + ": model." + key + (m.contains(key) ? " must be " : " is missing (expected ") +
                                (std::string(key) == "vocab" ? "an object of token -> id" : "a list of merges") +
                                (m.contains(key) ? "" : ")"),
                            FT_ERR_INVALID_ARGUMENT);
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

    std::string normalize(const std::string& s) const {
        if (!nfc_ || s.empty()) return s;
        // utf8proc_NFC reads up to the first NUL; a text may hold U+0000 (JSON "\u0000"),
        // which NFC keeps, so the length goes in explicitly (UTF8PROC_NULLTERM off).
        utf8proc_uint8_t* r = nullptr;
        const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                                static_cast<utf8proc_ssize_t>(s.size()), &r,
                                                static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
        if (n < 0) return s;  // not UTF-8: left as it is
        std::string out(reinterpret_cast<const char*>(r), static_cast<size_t>(n));
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

    struct Symbol {
        int64_t id;
        size_t start;  // byte offset in the word of its first character
    };

    // The word's tokens with their starts, cached (the same words recur).
    void merge(const std::string& word, std::vector<Symbol>& out) const {
        out.clear();
        if (word.empty()) return;
        {
            std::lock_guard<std::mutex> lock(cache_mutex_);
            auto it = cache_.find(word);
            if (it != cache_.end()) {
                out = it->second;
                return;
            }
        }
        auto whole = token_to_id_.find(word);
        if (ignore_merges_ && whole != token_to_id_.end()) out.push_back({whole->second, 0});
        else merge_uncached(word, out);
        std::lock_guard<std::mutex> lock(cache_mutex_);
        if (cache_.size() < 100000) cache_.emplace(word, out);
    }

    // tokenizers' Word::merge_all over the characters (bytes <0xNN> for one the vocabulary
    // lacks, with byte_fallback; else the unk token, runs of them fused with fuse_unk; else
    // dropped, as tokenizers does without an unk token).
    void merge_uncached(const std::string& word, std::vector<Symbol>& syms) const {
        const auto cps = code_points(word);
        const auto unk = unk_.empty() ? token_to_id_.end() : token_to_id_.find(unk_);
        bool last_unk = false;
        for (size_t k = 0; k < cps.size(); ++k) {
            const size_t b = cps[k].second, e = k + 1 < cps.size() ? cps[k + 1].second : word.size();
            const std::string ch = word.substr(b, e - b);
            auto it = token_to_id_.find(ch);
            if (it != token_to_id_.end()) {
                syms.push_back({it->second, b});
                last_unk = false;
                continue;
            }
            if (byte_fallback_) {
                std::vector<Symbol> bytes;
                for (unsigned char c : ch) {
                    auto bt = token_to_id_.find(byte_fallback_token(c));
                    if (bt == token_to_id_.end()) break;
                    bytes.push_back({bt->second, b});
                }
                if (bytes.size() == ch.size()) {
                    syms.insert(syms.end(), bytes.begin(), bytes.end());
                    last_unk = false;
                    continue;
                }
            }
            if (unk == token_to_id_.end()) continue;
            if (!(fuse_unk_ && last_unk)) syms.push_back({unk->second, b});
            last_unk = true;
        }
        // Merge the lowest-ranked adjacent pair (leftmost on ties) until none applies.
        while (syms.size() > 1) {
            int best = std::numeric_limits<int>::max();
            size_t at = 0;
            int64_t merged = 0;
            for (size_t k = 0; k + 1 < syms.size(); ++k) {
                auto m = merges_.find({syms[k].id, syms[k + 1].id});
                if (m != merges_.end() && m->second.first < best) best = m->second.first, at = k, merged = m->second.second;
            }
            if (best == std::numeric_limits<int>::max()) break;
            syms[at].id = merged;
            syms.erase(syms.begin() + static_cast<std::ptrdiff_t>(at) + 1);
        }
    }

    void bpe(const std::string& word, std::vector<int64_t>& out) const {
        std::vector<Symbol> syms;
        merge(word, syms);
        for (const auto& sym : syms) out.push_back(sym.id);
    }

    fs::path file_;
    std::unordered_map<std::string, int64_t> token_to_id_;
    std::unordered_map<int64_t, std::string> id_to_token_;
    std::map<std::pair<int64_t, int64_t>, std::pair<int, int64_t>> merges_;  // pair -> (rank, merged id)
    AddedVocabulary added_;
    std::vector<Split> splits_;  // the byte-level path's pre-tokenizers
    TextSteps steps_;            // a SentencePiece conversion's
    std::unique_ptr<TokenDecoder> decoder_;  // a SentencePiece conversion's; else ByteLevel
    PostProcessor post_;
    std::string unk_;
    int64_t vocab_size_ = 0;
    bool sentencepiece_ = false;
    bool nfc_ = false, byte_level_ = false, ignore_merges_ = false, byte_fallback_ = false, fuse_unk_ = false;
    mutable std::mutex cache_mutex_;
    mutable std::unordered_map<std::string, std::vector<Symbol>> cache_;
};

}  // namespace

namespace tokenizer_json {
std::unique_ptr<Tokenizer> make_bpe(const fs::path& file, const json& j) { return std::make_unique<BpeTokenizer>(file, j); }
}  // namespace tokenizer_json

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const fs::path& tokenizer_json) {
    return tokenizer_json::make_bpe(tokenizer_json, tokenizer_json::read(tokenizer_json));
}

}  // namespace fthost::host
