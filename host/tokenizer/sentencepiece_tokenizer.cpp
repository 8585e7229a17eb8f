// SentencePiece .model files through the sentencepiece library itself: the normaliser,
// the model (BPE with byte fallback, unigram) and decoding are its own. Special-token
// strings in the text (<s>, </s>, <unk>: the control and unknown pieces) are cut out
// first and become their ids, and each run of text between them is encoded on its own,
// as transformers' (legacy) Llama and T5 tokenizers do; sentencepiece alone would spell
// "</s>" out in characters. Chat templates put those strings in the text.
#include "tokenizer/tokenizer.hpp"

#include <fthost/plugin.hpp>

#include <sentencepiece_processor.h>

#include <algorithm>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

class SentencePieceTokenizer : public Tokenizer {
public:
    explicit SentencePieceTokenizer(const fs::path& file) {
        const auto status = sp_.Load(file.string());
        if (!status.ok()) throw Error(file.string() + ": not a SentencePiece model (" + status.ToString() + ")");
        for (int id = 0; id < sp_.GetPieceSize(); ++id)
            if (sp_.IsControl(id) || sp_.IsUnknown(id)) specials_.emplace_back(sp_.IdToPiece(id), id);
        std::sort(specials_.begin(), specials_.end(),
                  [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });  // longest first
    }
    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<size_t> starts;
        std::vector<int64_t> ids = encode_with_offsets(text, starts);
        if (add_special_tokens && sp_.bos_id() >= 0) ids.insert(ids.begin(), sp_.bos_id());
        return ids;
    }
    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        std::vector<int64_t> ids;
        starts.clear();
        size_t start = 0, i = 0;
        auto run = [&](size_t b, size_t e) {
            if (e <= b) return;
            const auto spt = sp_.EncodeAsImmutableProto(text.substr(b, e - b));
            for (const auto& p : spt.pieces()) {
                ids.push_back(p.id());
                starts.push_back(b + std::min<size_t>(p.begin(), e - b));
            }
        };
        while (i < text.size()) {
            const auto hit = std::find_if(specials_.begin(), specials_.end(),
                                          [&](const auto& s) { return text.compare(i, s.first.size(), s.first) == 0; });
            if (hit == specials_.end()) {
                ++i;
                continue;
            }
            run(start, i);
            ids.push_back(hit->second);
            starts.push_back(i);
            i += hit->first.size();
            start = i;
        }
        run(start, text.size());
        return ids;
    }
    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const override {
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
    int64_t vocab_size() const override { return sp_.GetPieceSize(); }
    std::optional<int64_t> token_to_id(const std::string& token) const override {
        const int id = sp_.PieceToId(token);
        if (id == sp_.unk_id() && token != sp_.IdToPiece(sp_.unk_id())) return std::nullopt;
        return id;
    }

private:
    sentencepiece::SentencePieceProcessor sp_;
    std::vector<std::pair<std::string, int64_t>> specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const fs::path& model_file) {
    return std::make_unique<SentencePieceTokenizer>(model_file);
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& dir) {
    if (fs::exists(dir / "tokenizer.json")) return load_bpe_tokenizer(dir / "tokenizer.json");
    if (fs::exists(dir / "tokenizer.model")) return load_sentencepiece_tokenizer(dir / "tokenizer.model");
    throw Error(dir.string() + ": no tokenizer.json or tokenizer.model", FT_ERR_CONFIG);
}

}  // namespace fthost::host
