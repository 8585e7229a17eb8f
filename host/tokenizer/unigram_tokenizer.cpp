// Hugging Face tokenizer.json with a Unigram model (T5, FLAN-T5, mT5: what transformers'
// T5 converter writes), as the `tokenizers` library runs it:
//   1. added tokens (</s>, <pad>, <unk>, <extra_id_N>) are cut out of the raw text first
//      (tokenizer_json.hpp), lstrip/rstrip as the file says;
//   2. the rest is normalised, alignments kept (text_steps.hpp): Precompiled (the
//      SentencePiece charsmap), Replace, Strip (what transformers 4 and 5 write for T5);
//   3. pre-tokenised: WhitespaceSplit, Metaspace (spaces become the replacement, "▁", which
//      is prepended per prepend_scheme always / first / never, and split on);
//   4. each piece is segmented by Viterbi over the vocabulary's scores (tokenizers'
//      encode_optimized: ties go to the first candidate; a character no piece covers is
//      <unk> with score min - 10, runs of them fused into one token, or bytes <0xNN> with
//      byte_fallback);
//   5. a TemplateProcessing post-processor appends </s>.
// Decoding: token_decoder.hpp (T5's Metaspace: "▁" -> " ", dropped in the first token). Offsets are
// where tokenizers puts them: the original byte each token's first normalised byte came
// from. Other normalisers, pre-tokenisers and decoders are an error naming the file and
// the type.
#include "tokenizer/normalized_string.hpp"
#include "tokenizer/text_steps.hpp"
#include "tokenizer/token_decoder.hpp"
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
    UnigramTokenizer(const fs::path& file, const json& j)
        : file_(file), steps_(file), decoder_(j.value("decoder", json()), file) {
        load_model(j.at("model"));
        added_.load(j.value("added_tokens", json()), file);
        for (const auto& a : added_.tokens()) vocab_size_ = std::max(vocab_size_, a.id + 1);
        steps_.load_normalizer(j.value("normalizer", json()));
        steps_.load_pre_tokenizer(j.value("pre_tokenizer", json()));
        post_.load(j.value("post_processor", json()), file);
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
        return utf8_lossy(decoder_.decode(std::move(tokens)));
    }

    int64_t vocab_size() const override { return vocab_size_; }

    std::optional<int64_t> token_to_id(const std::string& token) const override {
        if (const AddedToken* a = added_.find(token)) return a->id;
        auto it = piece_id_.find(token);
        if (it == piece_id_.end()) return std::nullopt;
        return it->second;
    }

private:
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

    // Steps 1-4 of the file comment; with `starts`, each token's original byte offset.
    std::vector<int64_t> run(const std::string& text, std::vector<size_t>* starts) const {
        return steps_.encode(text, added_, starts,
                             [&](const std::string& piece, const TextSteps::Emit& emit) { segment(piece, emit); });
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
                    auto b = piece_id_.find(byte_fallback_token(c));
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
    TextSteps steps_;
    PostProcessor post_;
    TokenDecoder decoder_;
};

}  // namespace

namespace tokenizer_json {
std::unique_ptr<Tokenizer> make_unigram(const fs::path& file, const json& j) {
    return std::make_unique<UnigramTokenizer>(file, j);
}
}  // namespace tokenizer_json

}  // namespace fthost::host
