// byte_tokenizer.hpp — the built-in tokenizer: one token per UTF-8 byte, plus the
// special tokens that EOS and the ChatML template need. Needs no vocabulary file, so
// the quickstart and the tests run anywhere; BPE and SentencePiece come with real
// checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fthost::host {

class ByteTokenizer {
public:
    static constexpr int64_t kEos = 256;      // <|endoftext|>: ends every example
    static constexpr int64_t kImStart = 257;  // <|im_start|>
    static constexpr int64_t kImEnd = 258;    // <|im_end|>
    static constexpr int64_t kPad = 259;      // <|pad|>: never attended to, never a label
    static constexpr int64_t kVocabSize = 260;

    std::vector<int64_t> encode(const std::string& text) const {
        std::vector<int64_t> ids;
        ids.reserve(text.size());
        for (unsigned char c : text) ids.push_back(c);
        return ids;
    }
    // Special tokens are dropped; bytes are concatenated back into UTF-8.
    std::string decode(const std::vector<int64_t>& ids) const {
        std::string out;
        for (int64_t id : ids)
            if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));
        return out;
    }
    int64_t vocab_size() const { return kVocabSize; }
};

}  // namespace fthost::host
