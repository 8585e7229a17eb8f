// text_steps.hpp — the normalisers and pre-tokenisers of tokenizer.json files converted
// from SentencePiece models (T5's Unigram; Llama 2, Mistral, Phi-3 and Gemma's BPE), run
// over NormalizedString so that each token's offset is the one the `tokenizers` library
// reports:
//   normalisers:     Precompiled (the SentencePiece charsmap), Replace (a string or a
//                    PCRE2 regex), Prepend, Strip, in a Sequence or alone;
//   pre-tokenisers:  Metaspace (spaces become the replacement, "▁", prepended per
//                    prepend_scheme always / first / never, split on or not),
//                    WhitespaceSplit, Split on one character (Removed, MergedWithPrevious,
//                    MergedWithNext), in a Sequence or alone.
// Anything else is an error naming the file and the type.
#pragma once

#include "tokenizer/normalized_string.hpp"
#include "tokenizer/precompiled_charsmap.hpp"
#include "tokenizer/tokenizer_json.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fthost::host::tokenizer_json {

enum class Prepend { always, first, never };

// Metaspace's prepend_scheme, or the older add_prefix_space (false = never).
Prepend prepend_scheme(const nlohmann::json& j, const std::filesystem::path& file);
// j[key] as one code point (default "▁").
uint32_t single_char(const nlohmann::json& j, const char* key, const std::filesystem::path& file);
// A Replace step's "pattern": {"String": s} (matched literally) or {"Regex": r}.
std::shared_ptr<Regex> pattern_regex(const nlohmann::json& pattern, const std::filesystem::path& file);

class TextSteps {
public:
    explicit TextSteps(std::filesystem::path file) : file_(std::move(file)) {}
    // tokenizer.json's "normalizer" / "pre_tokenizer" (null: none).
    void load_normalizer(const nlohmann::json& n);
    void load_pre_tokenizer(const nlohmann::json& p);

    void normalize(NormalizedString& s) const;
    // The pieces a model segments; none for an empty text.
    std::vector<NormalizedString> pre_tokenize(NormalizedString s) const;

    // The whole encoding around a model: `added` tokens cut out of the raw text, the rest
    // normalised, added tokens marked `normalized` cut out of that, each run left
    // pre-tokenised; `segment(piece, emit)` runs the model over one piece, calling
    // emit(id, byte offset in the piece) per token. With `starts`, each id's original
    // byte offset (tokenizers' offsets).
    using Emit = std::function<void(int64_t id, size_t at)>;
    std::vector<int64_t> encode(const std::string& text, const AddedVocabulary& added, std::vector<size_t>* starts,
                                const std::function<void(const std::string& piece, const Emit& emit)>& segment) const;

private:
    struct Normalizer {
        enum Kind { precompiled, replace, prepend, strip } kind;
        std::shared_ptr<PrecompiledCharsmap> charsmap;
        std::shared_ptr<Regex> regex;  // Replace
        std::string content;           // Replace's replacement, Prepend's prefix
        bool left = false, right = false;
    };
    struct PreTokenizer {
        enum Kind { metaspace, split } kind;
        uint32_t character = 0;  // Metaspace's replacement, or the one Split splits on
        Prepend prepend = Prepend::never;
        bool split_on_replacement = false;  // Metaspace's split
        NormalizedString::Delimiter delimiter = NormalizedString::Delimiter::removed;
        bool whitespace = false;  // WhitespaceSplit: split on any whitespace, removed
    };

    std::filesystem::path file_;
    std::vector<Normalizer> normalizers_;
    std::vector<PreTokenizer> pre_tokenizers_;
};

}  // namespace fthost::host::tokenizer_json
