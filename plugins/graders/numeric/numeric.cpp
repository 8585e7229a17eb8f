// numeric — parses a number from the model's answer and from the reference and scores 1
// when they agree within tolerance: |a − r| ≤ max(abs_tol, rel_tol · |r|). The answer's
// number is the last one it contains (extract = "last", how GSM8K-style answers end) or
// the first; thousands separators ("1,234") and a leading "+" are accepted. An answer
// without a number scores 0; an item whose reference has none is not applicable (NaN).
#include <fthost/plugin.hpp>

#include <algorithm>
#include <cmath>
#include <regex>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("abs_tol", FT_OPT_FLOAT, "1e-6", "absolute tolerance"),
    option("rel_tol", FT_OPT_FLOAT, "0.0", "relative tolerance (of the reference)"),
    option("extract", FT_OPT_STRING, "\"last\"", "which number of the answer counts: last or first"),
};

// Numbers like -12, 3.5, 1,234.5, +7, .5, 1e-3.
const std::regex kNumber(R"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?)");

bool parse(const std::string& text, bool last, double& out) {
    bool found = false;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), kNumber); it != std::sregex_iterator(); ++it) {
        std::string s = it->str();
        if (s.empty() || s.find_first_of("0123456789") == std::string::npos) continue;
        s.erase(std::remove(s.begin(), s.end(), ','), s.end());
        try {
            out = std::stod(s);
        } catch (const std::exception&) {
            continue;
        }
        found = true;
        if (!last) break;
    }
    return found;
}

class Numeric {
public:
    Numeric(const fthost::Host&, const fthost::Config& cfg)
        : abs_(cfg.get_float("abs_tol")), rel_(cfg.get_float("rel_tol")), last_(cfg.get_string("extract") == "last") {}

    static void validate(const fthost::Config& cfg) {
        if (cfg.get_float("abs_tol") < 0) cfg.fail("abs_tol", "must be >= 0");
        if (cfg.get_float("rel_tol") < 0) cfg.fail("rel_tol", "must be >= 0");
        const std::string e = cfg.get_string("extract");
        if (e != "last" && e != "first") cfg.fail("extract", "must be last or first");
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        double ref = 0, got = 0;
        if (!item.reference || !parse(item.reference, true, ref)) return std::nan("");
        if (!parse(item.completion ? item.completion : "", last_, got)) {
            reason = "no number in the answer";
            return 0.0;
        }
        const bool ok = std::abs(got - ref) <= std::max(abs_, rel_ * std::abs(ref));
        reason = (ok ? "equal: " : "differs: ") + std::to_string(got) + " vs " + std::to_string(ref);
        return ok ? 1.0 : 0.0;
    }

private:
    double abs_, rel_;
    bool last_;
};

}  // namespace

FTHOST_GRADER(numeric, Numeric, "numeric", "0.1.0", "1 when the answer's number equals the reference's within tolerance",
              kOptions, FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(numeric)
