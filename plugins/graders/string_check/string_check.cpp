// string_check — compares the model's answer with the reference (or a configured
// value / pattern) and scores 1 or 0, as OpenAI's RFT string_check grader does:
//   eq  answer == target         ne  answer != target
//   contains  target occurs in the answer       icontains  the same, ignoring case
//   regex  the answer contains a match of `pattern` (ECMAScript syntax)
// Answer and target are trimmed of surrounding whitespace first (strip = true).
// Without a target (no reference row field and no `value`) the item is not applicable.
#include <fthost/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <set>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("operation", FT_OPT_STRING, "\"eq\"", "eq, ne, contains, icontains or regex"),
    option("value", FT_OPT_STRING, "\"\"", "compare with this instead of the dataset's reference"),
    option("pattern", FT_OPT_STRING, "\"\"", "regex: the pattern the answer must contain a match of"),
    option("strip", FT_OPT_BOOL, "true", "trim surrounding whitespace of answer and target"),
};

const std::set<std::string> kOps = {"eq", "ne", "contains", "icontains", "regex"};

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

class StringCheck {
public:
    StringCheck(const fthost::Host&, const fthost::Config& cfg)
        : op_(cfg.get_string("operation")), value_(cfg.get_string("value")), strip_(cfg.get_bool("strip")) {
        if (op_ == "regex") re_ = std::regex(cfg.get_string("pattern"), std::regex::ECMAScript);
    }

    static void validate(const fthost::Config& cfg) {
        const std::string op = cfg.get_string("operation");
        if (!kOps.count(op)) cfg.fail("operation", "must be eq, ne, contains, icontains or regex (got \"" + op + "\")");
        if (op == "regex") {
            if (cfg.get_string("pattern").empty()) cfg.fail("pattern", "operation regex needs a pattern");
            try {
                std::regex(cfg.get_string("pattern"), std::regex::ECMAScript);
            } catch (const std::regex_error& e) {
                cfg.fail("pattern", std::string("is not a valid regular expression: ") + e.what());
            }
        }
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        std::string answer = item.completion ? item.completion : "";
        if (strip_) answer = trim(answer);
        if (op_ == "regex") {
            const bool hit = std::regex_search(answer, re_);
            reason = hit ? "pattern found" : "pattern not found";
            return hit ? 1.0 : 0.0;
        }
        if (value_.empty() && !item.reference) return std::nan("");
        std::string target = value_.empty() ? item.reference : value_;
        if (strip_) target = trim(target);
        bool ok = false;
        if (op_ == "eq") ok = answer == target;
        else if (op_ == "ne") ok = answer != target;
        else if (op_ == "contains") ok = answer.find(target) != std::string::npos;
        else ok = lower(answer).find(lower(target)) != std::string::npos;
        reason = ok ? "match" : "no match";
        return ok ? 1.0 : 0.0;
    }

private:
    std::string op_, value_;
    bool strip_;
    std::regex re_;
};

}  // namespace

FTHOST_GRADER(string_check, StringCheck, "string_check", "0.1.0",
              "1 when the answer equals / differs from / contains the target or matches a regex", kOptions,
              FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(string_check)
