// normalized_string.hpp — a piece of text being normalised and pre-tokenised, with each
// of its bytes' place in the original text: the `tokenizers` library's NormalizedString,
// whose alignment rules decide the offsets it reports (unigram_tokenizer.cpp reports the
// same ones). Offsets here are absolute byte offsets in the text given to encode().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fthost::host {

class NormalizedString {
public:
    // text[begin, end) as it is.
    NormalizedString(const std::string& text, size_t begin, size_t end);

    const std::string& get() const { return normalized_; }
    bool empty() const { return normalized_.empty(); }
    // Where the piece starts in the original text (tokenizers' offsets_original().0).
    size_t original_begin() const { return original_begin_; }
    // The original offset of the normalised byte at `i` (the start of what it came from).
    size_t original_at(size_t i) const;

    // One (code point, change) per character of the new text replacing normalised bytes
    // [begin, end): change 0 replaces the next old character, 1 inserts one, -n replaces
    // the next and removes n more; `initial_offset` old characters are dropped first.
    // Alignments follow tokenizers' transform_range exactly.
    using Change = std::pair<uint32_t, int64_t>;
    void transform_range(size_t begin, size_t end, const std::vector<Change>& dest, size_t initial_offset);
    void transform(const std::vector<Change>& dest, size_t initial_offset) {
        transform_range(0, normalized_.size(), dest, initial_offset);
    }
    // Each [begin, end) (sorted, disjoint) becomes `content`, aligned to its last byte.
    void replace(const std::vector<std::pair<size_t, size_t>>& matches, const std::string& content);
    void prepend(const std::string& s);
    void strip(bool left, bool right);  // Rust whitespace

    // Split by characters matching `is_delimiter`: removed, or each delimiter merged with
    // the text after / before it (tokenizers' Removed / MergedWithNext /
    // MergedWithPrevious). Empty pieces are dropped.
    enum class Delimiter { removed, merged_with_next, merged_with_previous };
    std::vector<NormalizedString> split(const std::function<bool(uint32_t)>& is_delimiter, Delimiter behaviour) const;
    NormalizedString slice(size_t begin, size_t end) const;  // normalised bytes [begin, end)

private:
    NormalizedString() = default;
    std::string normalized_;
    std::vector<std::pair<size_t, size_t>> align_;  // per normalised byte: original [start, end)
    size_t original_begin_ = 0;
};

}  // namespace fthost::host
