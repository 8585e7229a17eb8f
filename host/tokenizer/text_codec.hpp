// text_codec.hpp — what a stage turns text into tokens with, and back: the model's
// tokenizer, its chat template and its special tokens (EOS, padding, where generation
// stops). fthost's own models use the built-in byte tokenizer with ChatML; a Hugging
// Face checkpoint (and every stage trained from one) brings tokenizer.json or
// tokenizer.model with tokenizer_config.json, which fthost copies into each final/.
#pragma once

#include "tokenizer/chat_template.hpp"
#include "tokenizer/tokenizer.hpp"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fthost::host {

// A conversation as tokens, with the tokens of the assistant's turns marked.
struct EncodedChat {
    std::vector<int64_t> ids;
    std::vector<uint8_t> assistant;  // 1 where the token's text overlaps an assistant segment
};

class TextCodec {
public:
    // The byte tokenizer with ChatML (models fthost builds from a config).
    static std::shared_ptr<const TextCodec> bytes();
    // The tokenizer saved with the model in `dir`, or bytes() when `dir` has none.
    // chat_template: a built-in template's name, or "" for the one tokenizer_config.json
    // holds (recognised when a conversation is first rendered: data without messages
    // needs no template).
    static std::shared_ptr<const TextCodec> for_model(const std::filesystem::path& dir, const std::string& chat_template);

    // add_special_tokens: what the tokenizer puts around a text (Llama's BOS).
    std::vector<int64_t> encode(const std::string& text, bool add_special_tokens) const {
        return tokenizer_->encode(text, add_special_tokens);
    }
    // The conversation rendered with the chat template and encoded as one text (so token
    // boundaries are the ones the model saw), the assistant's tokens found by offset.
    EncodedChat encode_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    // The rendered text of a conversation, with its assistant segments.
    std::vector<ChatSegment> render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
    // Special tokens are skipped.
    std::string decode(const std::vector<int64_t>& ids) const { return tokenizer_->decode(ids, true); }

    // A token's id by its text (a special or added token such as T5's <extra_id_0>), when
    // the vocabulary has it.
    std::optional<int64_t> token_to_id(const std::string& token) const { return tokenizer_->token_to_id(token); }
    int64_t eos_id() const { return eos_id_; }
    int64_t pad_id() const { return pad_id_; }
    // EOS, the template's end of turn, and generation_config.json's eos_token_id.
    const std::vector<int64_t>& stop_ids() const { return stop_ids_; }
    int64_t vocab_size() const { return tokenizer_->vocab_size(); }
    // Sampling draws ids below this (never the byte tokenizer's padding id).
    int64_t sample_limit() const { return sample_limit_; }
    bool is_bytes() const { return files_.empty(); }
    // The tokenizer files to save next to a model trained with this codec.
    const std::vector<std::filesystem::path>& files() const { return files_; }
    // Copies files() into `dir` (a model directory being written).
    void save(const std::filesystem::path& dir) const;
    // "byte-level, chatml" / "tokenizer.json, chat template llama3".
    std::string describe() const;

private:
    ChatTemplate chat_template() const;  // throws template_error_ when there is none

    std::shared_ptr<const Tokenizer> tokenizer_;
    std::optional<ChatTemplate> template_;
    std::string template_error_, bos_, eos_, source_;
    int64_t eos_id_ = 0, pad_id_ = 0, sample_limit_ = 0;
    std::vector<int64_t> stop_ids_;
    std::vector<std::filesystem::path> files_;
};

}  // namespace fthost::host
