// token_decoder.hpp — tokenizer.json's "decoder": token strings back to text, as the
// `tokenizers` library's decode_chain does for the decoders SentencePiece conversions
// write (Llama 2, Mistral, Phi-3: Replace "▁" -> " ", ByteFallback, Fuse, Strip one
// leading space; Gemma: the same without Strip; T5 and newer Llama conversions:
// Metaspace), in a Sequence or alone. No decoder joins the tokens with spaces, as
// tokenizers does. ByteLevel lives with the byte-level BPE (bpe_tokenizer.cpp).
#pragma once

#include "tokenizer/text_steps.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace fthost::host::tokenizer_json {

class TokenDecoder {
public:
    // `decoder`: the JSON value (null: none); an unsupported type is an error naming `file`.
    TokenDecoder(const nlohmann::json& decoder, const std::filesystem::path& file);
    std::string decode(std::vector<std::string> tokens) const;

private:
    struct Step {
        enum Kind { replace, byte_fallback, fuse, strip, metaspace } kind;
        std::shared_ptr<Regex> pattern;  // Replace
        std::string content;             // Replace's replacement
        uint32_t character = 0;          // Strip's, Metaspace's replacement
        size_t start = 0, stop = 0;      // Strip
        Prepend prepend = Prepend::always;
    };
    void load(const nlohmann::json& d, const std::filesystem::path& file);

    bool none_ = true;
    std::vector<Step> steps_;
};

}  // namespace fthost::host::tokenizer_json
