// score_output — what a grading program printed, read as scores: {"scores": [...]} or a
// bare array, exactly one number or null per item. Numbers are clamped to [0, 1]; null is
// "not applicable" (NaN). Anything else throws std::runtime_error with the reason, which
// the grader reports as the batch's failure. Kept apart from the sandbox so that a fuzz
// target (tests/fuzz/fuzz_program_output.cpp) reaches it directly.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fthost_program {

// The start of the output, printable ASCII kept and every other byte as \xNN, so that a
// reason quoting it is valid UTF-8 whatever the program printed.
inline std::string quote_output(const std::string& out, size_t limit = 60) {
    std::string q;
    for (size_t i = 0; i < out.size() && i < limit; ++i) {
        const auto c = static_cast<unsigned char>(out[i]);
        if (c >= 0x20 && c < 0x7f) {
            q += static_cast<char>(c);
        } else {
            static const char* hex = "0123456789abcdef";
            q += "\\x";
            q += hex[c >> 4];
            q += hex[c & 15];
        }
    }
    if (out.size() > limit) q += "...";
    return q;
}

inline std::vector<double> parse_scores(const std::string& out, uint32_t count) {
    using nlohmann::json;
    json j;
    try {
        j = json::parse(out);
    } catch (const json::parse_error& e) {
        throw std::runtime_error("not JSON (syntax error at byte " + std::to_string(e.byte) + "): \"" + quote_output(out) + "\"");
    } catch (const json::exception&) {
        // out_of_range.406: a number beyond a double's range, e.g. 1e400.
        throw std::runtime_error("a number does not fit a double: \"" + quote_output(out) + "\"");
    }
    if (j.is_object() && j.contains("scores")) j = j["scores"];
    if (!j.is_array())
        throw std::runtime_error("expected {\"scores\": [...]} or an array of " + std::to_string(count) + " scores, got " +
                                 j.type_name());
    if (j.size() != count)
        throw std::runtime_error("expected " + std::to_string(count) + " scores (one per item), got " + std::to_string(j.size()));
    std::vector<double> scores;
    scores.reserve(count);
    for (const auto& s : j) {
        if (s.is_null()) scores.push_back(std::nan(""));
        else if (s.is_number()) scores.push_back(std::clamp(s.get<double>(), 0.0, 1.0));
        else throw std::runtime_error("a score is neither a number nor null");
    }
    return scores;
}

}  // namespace fthost_program
