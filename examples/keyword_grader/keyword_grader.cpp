// keyword_coverage — the share of required keywords that the model's answer mentions
// (case-insensitive). Keywords come from the config, or, when none are configured,
// from the reference answer's words. Built with the SDK's C++ layer and no LibTorch.
#include <fthost/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

namespace {

const ft_option kOptions[] = {
    fthost::option("keywords", FT_OPT_STRING_LIST, "[]", "words the answer must mention (default: the reference's words)"),
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

class KeywordCoverage {
public:
    KeywordCoverage(const fthost::Host&, const fthost::Config& cfg) {
        validate(cfg);
        for (const auto& k : cfg.get_string_list("keywords")) keywords_.push_back(lower(k));
    }

    static void validate(const fthost::Config& cfg) {
        for (const auto& k : cfg.get_string_list("keywords"))
            if (k.empty()) cfg.fail("keywords", "an empty keyword matches everything");
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        std::vector<std::string> wanted = keywords_;
        if (wanted.empty() && item.reference) {
            std::istringstream words(lower(item.reference));
            for (std::string w; words >> w;) wanted.push_back(w);
        }
        if (wanted.empty()) return std::nan("");  // nothing to check: not applicable
        const std::string answer = lower(item.completion ? item.completion : "");
        int found = 0;
        for (const auto& w : wanted) found += answer.find(w) != std::string::npos;
        reason = std::to_string(found) + "/" + std::to_string(wanted.size()) + " keywords";
        return static_cast<double>(found) / static_cast<double>(wanted.size());
    }

private:
    std::vector<std::string> keywords_;
};

}  // namespace

FTHOST_GRADER(keyword_coverage, KeywordCoverage, "keyword_coverage", "1.0.0",
              "share of required keywords the answer mentions", kOptions, FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(keyword_coverage)
