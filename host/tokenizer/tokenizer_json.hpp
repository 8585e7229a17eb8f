// tokenizer_json.hpp — what the tokenizer.json tokenizers (bpe_tokenizer.cpp,
// unigram_tokenizer.cpp) share: reading the file and dispatching on its model type,
// errors that name the file and the unsupported part, UTF-8 helpers, PCRE2 regexes, the
// added tokens cut out of the text first (as the `tokenizers` library's AddedVocabulary
// does, lstrip/rstrip included) and the TemplateProcessing post-processor.
#pragma once

#include "tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fthost::host::tokenizer_json {

// tokenizer.json, parsed; an error names the file.
nlohmann::json read(const std::filesystem::path& file);
// The tokenizer a parsed tokenizer.json describes: model.type "BPE" or "Unigram".
std::unique_ptr<Tokenizer> load(const std::filesystem::path& file);
std::unique_ptr<Tokenizer> make_bpe(const std::filesystem::path& file, const nlohmann::json& j);
std::unique_ptr<Tokenizer> make_unigram(const std::filesystem::path& file, const nlohmann::json& j);

// "<file>: <what> is not supported" (FT_ERR_UNSUPPORTED).
[[noreturn]] void unsupported(const std::filesystem::path& file, const std::string& what);

void append_utf8(std::string& s, uint32_t cp);
// Code points of `s` with each one's byte offset (an invalid byte reads as U+FFFD, one byte).
std::vector<std::pair<uint32_t, size_t>> code_points(std::string_view s);
// Bytes in the UTF-8 sequence that starts with `lead` (1 for a stray byte).
size_t utf8_length(unsigned char lead);
// The byte-fallback token of byte c, "<0xNN>" (SentencePiece's name, which tokenizers keeps).
std::string byte_fallback_token(unsigned char c);
// Rust's char::is_whitespace (Unicode White_Space), which `tokenizers` uses.
bool is_whitespace(uint32_t cp);

// A PCRE2 pattern (UTF, Unicode properties).
class Regex {
public:
    Regex(const std::string& pattern, const std::filesystem::path& file);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
    // The non-empty matches, left to right, each [begin, end) in bytes.
    std::vector<std::pair<size_t, size_t>> matches(std::string_view text) const;
    // Isolated split: every match and every non-empty gap between them, in order.
    std::vector<std::string> split(const std::string& text) const;

private:
    struct Code;
    Code* code_ = nullptr;
};

struct AddedToken {
    std::string content;
    int64_t id = 0;
    bool special = false, normalized = false, lstrip = false, rstrip = false;
};

// A piece of a text: either an added token (with the whitespace its lstrip/rstrip took
// in) or the text between two of them.
struct Segment {
    size_t begin = 0, end = 0;  // bytes
    const AddedToken* token = nullptr;
};

class AddedVocabulary {
public:
    // tokenizer.json's "added_tokens" (an array, or null).
    void load(const nlohmann::json& added_tokens, const std::filesystem::path& file);
    // Cuts the added tokens whose `normalized` flag is `normalized` out of `text`, leftmost
    // match first and the longest there (as aho-corasick LeftmostLongest); lstrip takes the
    // whitespace before a token in, rstrip the whitespace after it.
    std::vector<Segment> split(std::string_view text, bool normalized) const;
    const AddedToken* find(int64_t id) const;
    const AddedToken* find(const std::string& content) const;
    const std::vector<AddedToken>& tokens() const { return tokens_; }

private:
    void index();
    std::vector<AddedToken> tokens_;
    std::array<std::vector<size_t>, 256> by_first_byte_;  // indices into tokens_, longest first
    std::unordered_map<int64_t, size_t> by_id_;
    std::unordered_map<std::string, size_t> by_content_;
};

// The post-processor's ids around a single sequence ($A): TemplateProcessing's "single";
// ByteLevel (offsets only) and no post-processor add nothing.
class PostProcessor {
public:
    void load(const nlohmann::json& post_processor, const std::filesystem::path& file);
    std::vector<int64_t> apply(const std::vector<int64_t>& ids) const;

private:
    struct Part {
        bool is_sequence = false;
        std::vector<int64_t> ids;
    };
    std::vector<Part> parts_;
};

}  // namespace fthost::host::tokenizer_json
