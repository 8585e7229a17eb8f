// SentencePiece .model files through the sentencepiece library itself: the normaliser,
// the model (BPE with byte fallback, unigram) and decoding are its own.
#include "tokenizer/tokenizer.hpp"

#include <fthost/plugin.hpp>

#include <sentencepiece_processor.h>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

class SentencePieceTokenizer : public Tokenizer {
public:
    explicit SentencePieceTokenizer(const fs::path& file) {
        const auto status = sp_.Load(file.string());
        if (!status.ok()) throw Error(file.string() + ": not a SentencePiece model (" + status.ToString() + ")");
    }
    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const override {
        std::vector<int> ids;
        const auto status = sp_.Encode(text, &ids);
        if (!status.ok()) throw Error("SentencePiece encode: " + status.ToString());
        std::vector<int64_t> out;
        if (add_special_tokens && sp_.bos_id() >= 0) out.push_back(sp_.bos_id());
        out.insert(out.end(), ids.begin(), ids.end());
        return out;
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
