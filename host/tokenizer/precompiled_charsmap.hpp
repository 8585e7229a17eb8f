// precompiled_charsmap.hpp — SentencePiece's normalisation rules as a model stores them
// (normalizer_spec.precompiled_charsmap; a tokenizer.json "Precompiled" normaliser holds
// the same bytes in base64): a little-endian u32 byte length, a darts-clone double-array
// trie of that many bytes over the rules' source strings, then the NUL-terminated
// replacement strings that the trie's values point into.
#pragma once

#include "tokenizer/normalized_string.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fthost::host {

class PrecompiledCharsmap {
public:
    // An error names `file` when the bytes are not such a map.
    PrecompiledCharsmap(const std::string& bytes, const std::filesystem::path& file);
    static std::string decode_base64(const std::string& text, const std::filesystem::path& file);

    // The replacement of every rule whose source is a prefix of `key`, shortest first.
    std::vector<std::string_view> prefix_matches(std::string_view key) const;

    // `s` normalised as the `tokenizers` library's Precompiled normaliser does it: per
    // extended grapheme cluster under 6 bytes, the replacement of the shortest rule that
    // is a prefix of the cluster stands for the whole cluster; otherwise (or when none
    // matches) each character is replaced by its own rule or kept. Alignments as tokenizers
    // records them.
    void normalize(NormalizedString& s) const;

private:
    std::vector<uint32_t> units_;
    std::string pool_;
};

}  // namespace fthost::host
