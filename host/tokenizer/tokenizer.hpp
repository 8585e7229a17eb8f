// tokenizer.hpp — text <-> token ids for real checkpoints: Hugging Face tokenizer.json
// (byte-level BPE: GPT-2, Llama 3, Qwen2; Unigram: T5, FLAN-T5) and SentencePiece .model
// files (Llama 2, Mistral; T5 with transformers' T5Tokenizer conventions), equal to the
// `tokenizers`, `sentencepiece` and transformers libraries' encodings
// (tests/unit/tokenizer_test.cpp), and the built-in byte tokenizer of fthost's own
// models (byte_tokenizer.hpp).
#pragma once

#include "io/utf8.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fthost::host {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // add_special_tokens: what the tokenizer adds around a text (Llama 3's
    // <|begin_of_text|>, SentencePiece's BOS, T5's </s> after it). Special-token strings
    // inside the text are always recognised as those tokens, as the reference libraries do.
    virtual std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const = 0;
    // encode(text, false) and, per token, the byte offset in `text` where its text begins
    // (what transformers' char_to_token answers; chat templates use it to find the
    // tokens of the assistant's turns in one encoding of the whole conversation).
    virtual std::vector<int64_t> encode_with_offsets(const std::string& text, std::vector<size_t>& starts) const = 0;
    // Invalid UTF-8 from partial byte sequences becomes U+FFFD.
    virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual std::optional<int64_t> token_to_id(const std::string& token) const = 0;
};

// tokenizer.json (preferred; its model.type, BPE or Unigram, picks the tokenizer), else
// tokenizer.model or spiece.model in `dir`; an error names what is missing or which part
// of the file is not supported.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir);

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& tokenizer_json);
// T5-style (transformers' T5Tokenizer) when the tokenizer_config.json next to the file
// says so (sentencepiece_tokenizer.cpp).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model_file);

// utf8_lossy (bytes -> valid UTF-8) lives in io/utf8.hpp, included above.

}  // namespace fthost::host
