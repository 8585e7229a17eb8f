// byte_tokenizer.hpp — the built-in tokenizer of fthost's own models: one token per UTF-8
// byte, plus the special tokens that EOS and the ChatML template need. Needs no
// vocabulary file, so the quickstart and the tests run anywhere; checkpoints bring their
// own BPE or SentencePiece tokenizer (tokenizer.hpp).
#pragma once

#include "tokenizer/tokenizer.hpp"

#include <array>

namespace fthost::host {

class ByteTokenizer : public Tokenizer {
public:
    static constexpr int64_t kEos = 256;      // <|endoftext|>: ends every example
    static constexpr int64_t kImStart = 257;  // <|im_start|>
    static constexpr int64_t kImEnd = 258;    // <|im_end|>
    static constexpr int64_t kPad = 259;      // <|pad|>: never attended to, never a label
    static constexpr int64_t kVocabSize = 260;

    // Special-token strings in the text become their ids (as in every other tokenizer).
    std::vector<int64_t> encode(const std::string& text, bool /*add_special_tokens: none*/) const override {
        std::vector<size_t> starts;
        return encode_with_offsets(text, starts);
    }
    std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const override {
        std::vector<int64_t> ids;
        ids.reserve(text.size());
        starts.clear();
        for (size_t i = 0; i < text.size();) {
            int64_t special = -1;
            if (text.compare(i, 2, "<|") == 0)
                for (int64_t id = kEos; id < kVocabSize; ++id)
                    if (text.compare(i, special_name(id).size(), special_name(id)) == 0) special = id;
            starts.push_back(i);
            if (special >= 0) {
                ids.push_back(special);
                i += special_name(special).size();
            } else {
                ids.push_back(static_cast<unsigned char>(text[i++]));
            }
        }
        return ids;
    }
    // Bytes are concatenated back as they are (a sampled sequence may be invalid UTF-8;
    // writers to JSON replace those bytes).
    std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const override {
        std::string out;
        for (int64_t id : ids)
            if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
            else if (id >= kEos && id < kVocabSize && !skip_special_tokens) out += special_name(id);
        return out;
    }
    int64_t vocab_size() const override { return kVocabSize; }
    std::optional<int64_t> token_to_id(const std::string& token) const override {
        for (int64_t id = kEos; id < kVocabSize; ++id)
            if (token == special_name(id)) return id;
        return std::nullopt;
    }
    static const std::string& special_name(int64_t id) {
        static const std::array<std::string, 4> names = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"};
        return names.at(static_cast<size_t>(id - kEos));
    }
};

}  // namespace fthost::host
