#include "tokenizer/normalized_string.hpp"

#include "tokenizer/tokenizer_json.hpp"

#include <algorithm>

namespace fthost::host {

using tokenizer_json::append_utf8;
using tokenizer_json::code_points;
using tokenizer_json::is_whitespace;

NormalizedString::NormalizedString(const std::string& text, size_t begin, size_t end)
    : normalized_(text.substr(begin, end - begin)), original_begin_(begin) {
    const auto cps = code_points(normalized_);
    align_.reserve(normalized_.size());
    for (size_t k = 0; k < cps.size(); ++k) {
        const size_t b = cps[k].second, e = k + 1 < cps.size() ? cps[k + 1].second : normalized_.size();
        for (size_t i = b; i < e; ++i) align_.emplace_back(begin + b, begin + e);
    }
}

size_t NormalizedString::original_at(size_t i) const {
    if (i < align_.size()) return align_[i].first;
    return align_.empty() ? original_begin_ : align_.back().second;
}

void NormalizedString::transform_range(size_t begin, size_t end, const std::vector<Change>& dest, size_t initial_offset) {
    // The old characters of the range, consumed as the changes say.
    const std::string old_text = normalized_.substr(begin, end - begin);
    const auto old = code_points(old_text);
    auto old_len = [&](size_t k) { return (k + 1 < old.size() ? old[k + 1].second : old_text.size()) - old[k].second; };
    size_t next_old = 0, offset = begin;
    for (; next_old < old.size() && next_old < initial_offset; ++next_old) offset += old_len(next_old);

    auto align_at = [&](size_t idx) {
        if (idx < align_.size()) return align_[idx];
        return align_.empty() ? std::make_pair(original_begin_, original_begin_) : align_.back();
    };
    std::string text;
    std::vector<std::pair<size_t, size_t>> align;
    for (const auto& [c, change] : dest) {
        const size_t idx = offset;
        // An inserted character takes the alignment of the byte before it.
        const auto a = change > 0 ? (idx < 1 ? std::make_pair(original_begin_, original_begin_) : align_at(idx - 1))
                                  : align_at(idx);
        if (change <= 0 && next_old < old.size()) offset += old_len(next_old++);
        for (int64_t k = 0; k < -change && next_old < old.size(); ++k) offset += old_len(next_old++);
        const size_t before = text.size();
        append_utf8(text, c);
        align.insert(align.end(), text.size() - before, a);
    }
    normalized_.replace(begin, end - begin, text);
    align_.erase(align_.begin() + static_cast<std::ptrdiff_t>(begin), align_.begin() + static_cast<std::ptrdiff_t>(end));
    align_.insert(align_.begin() + static_cast<std::ptrdiff_t>(begin), align.begin(), align.end());
}

void NormalizedString::replace(const std::vector<std::pair<size_t, size_t>>& matches, const std::string& content) {
    std::string text;
    std::vector<std::pair<size_t, size_t>> align;
    size_t last = 0;
    for (const auto& [b, e] : matches) {
        text.append(normalized_, last, b - last);
        align.insert(align.end(), align_.begin() + static_cast<std::ptrdiff_t>(last),
                     align_.begin() + static_cast<std::ptrdiff_t>(b));
        const auto a = e < 1 ? std::make_pair(original_begin_, original_begin_) : align_[e - 1];
        text += content;
        align.insert(align.end(), content.size(), a);
        last = e;
    }
    text.append(normalized_, last, std::string::npos);
    align.insert(align.end(), align_.begin() + static_cast<std::ptrdiff_t>(last), align_.end());
    normalized_ = std::move(text);
    align_ = std::move(align);
}

void NormalizedString::prepend(const std::string& s) {
    if (normalized_.empty() || s.empty()) return;
    const auto first = code_points(normalized_).front().first;
    const size_t first_len = tokenizer_json::utf8_length(static_cast<unsigned char>(normalized_[0]));
    std::vector<Change> dest;
    for (const auto& [c, _] : code_points(s)) dest.emplace_back(c, dest.empty() ? 0 : 1);
    dest.emplace_back(first, 1);
    transform_range(0, std::min(first_len, normalized_.size()), dest, 0);
}

void NormalizedString::strip(bool left, bool right) {
    const auto cps = code_points(normalized_);
    const int64_t count = static_cast<int64_t>(cps.size());
    int64_t leading = 0, trailing = 0;
    if (left)
        while (leading < count && is_whitespace(cps[static_cast<size_t>(leading)].first)) ++leading;
    if (right)
        while (trailing < count && is_whitespace(cps[static_cast<size_t>(count - 1 - trailing)].first)) ++trailing;
    if (leading == 0 && trailing == 0) return;
    std::vector<Change> dest;
    for (int64_t i = 0; i < count; ++i) {
        if (i < leading || i >= count - trailing) continue;
        // tokenizers compares the character index with the byte length here, so the
        // removal is only recorded when the text is ASCII; kept as it is.
        const bool last = i == static_cast<int64_t>(normalized_.size()) - trailing - 1;
        dest.emplace_back(cps[static_cast<size_t>(i)].first, last ? -trailing : 0);
    }
    transform(dest, static_cast<size_t>(leading));
}

NormalizedString NormalizedString::slice(size_t begin, size_t end) const {
    NormalizedString s;
    s.normalized_ = normalized_.substr(begin, end - begin);
    s.align_.assign(align_.begin() + static_cast<std::ptrdiff_t>(begin), align_.begin() + static_cast<std::ptrdiff_t>(end));
    s.original_begin_ = begin < end ? align_[begin].first : original_at(begin);
    return s;
}

std::vector<NormalizedString> NormalizedString::split(const std::function<bool(uint32_t)>& is_delimiter,
                                                      Delimiter behaviour) const {
    struct Piece {
        size_t begin, end;
        bool match;
    };
    std::vector<Piece> pieces;
    size_t last = 0;
    const auto cps = code_points(normalized_);
    for (size_t k = 0; k < cps.size(); ++k) {
        const size_t b = cps[k].second, e = k + 1 < cps.size() ? cps[k + 1].second : normalized_.size();
        if (!is_delimiter(cps[k].first)) continue;
        if (last < b) pieces.push_back({last, b, false});
        pieces.push_back({b, e, true});
        last = e;
    }
    if (last < normalized_.size()) pieces.push_back({last, normalized_.size(), false});

    std::vector<std::pair<size_t, size_t>> keep;
    if (behaviour == Delimiter::removed) {
        for (const auto& p : pieces)
            if (!p.match) keep.emplace_back(p.begin, p.end);
    } else if (behaviour == Delimiter::merged_with_previous) {  // a delimiter after a delimiter stays alone
        bool previous_match = false;
        for (const auto& p : pieces) {
            if (p.match && !previous_match && !keep.empty()) keep.back().second = p.end;
            else keep.emplace_back(p.begin, p.end);
            previous_match = p.match;
        }
    } else {  // a delimiter joins the piece after it; a delimiter before a delimiter stays alone
        bool previous_match = false;
        for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
            if (it->match && !previous_match && !keep.empty()) keep.back().first = it->begin;
            else keep.emplace_back(it->begin, it->end);
            previous_match = it->match;
        }
        std::reverse(keep.begin(), keep.end());
    }
    std::vector<NormalizedString> out;
    for (const auto& [b, e] : keep)
        if (e > b) out.push_back(slice(b, e));
    return out;
}

}  // namespace fthost::host
