// text_similarity — how close the model's answer is to the reference, in [0, 1]:
//   f1       token F1 (precision and recall of the bag of tokens), as SQuAD scores
//   bleu     sentence BLEU-4: geometric mean of 1..4-gram precisions with add-one
//            smoothing for n > 1 (Lin & Och 2004), times the brevity penalty
//   rouge_l  ROUGE-L F-measure (beta = 1) from the longest common subsequence
// Tokenisation (documented, the same for all three): lowercase; every character that is
// not a letter, digit or whitespace becomes a space; split on whitespace; for f1 the
// articles a/an/the are dropped, as SQuAD's normalisation does. With pass_threshold > 0
// the score becomes 1 when it reaches the threshold, else 0. No reference: NaN.
#include <fthost/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("metric", FT_OPT_STRING, "\"f1\"", "f1, bleu or rouge_l"),
    option("pass_threshold", FT_OPT_FLOAT, "0.0", "score 1 at or above this similarity, else 0 (0 = raw score)"),
};

std::vector<std::string> tokens(const std::string& text, bool drop_articles) {
    std::string s;
    for (unsigned char c : text) s.push_back(std::isalnum(c) || std::isspace(c) || c >= 128 ? static_cast<char>(std::tolower(c)) : ' ');
    std::istringstream in(s);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        if (!drop_articles || (w != "a" && w != "an" && w != "the")) out.push_back(w);
    return out;
}

double f1(const std::vector<std::string>& a, const std::vector<std::string>& r) {
    if (a.empty() || r.empty()) return a.empty() && r.empty() ? 1.0 : 0.0;
    std::map<std::string, int> ca, cr;
    for (const auto& w : a) ++ca[w];
    for (const auto& w : r) ++cr[w];
    int common = 0;
    for (const auto& [w, n] : ca) common += std::min(n, cr.count(w) ? cr[w] : 0);
    if (common == 0) return 0.0;
    const double p = static_cast<double>(common) / a.size(), rc = static_cast<double>(common) / r.size();
    return 2 * p * rc / (p + rc);
}

double bleu(const std::vector<std::string>& a, const std::vector<std::string>& r) {
    if (a.empty() || r.empty()) return 0.0;
    double log_sum = 0;
    for (size_t n = 1; n <= 4; ++n) {
        std::map<std::vector<std::string>, int> ca, cr;
        for (size_t i = 0; i + n <= a.size(); ++i) ++ca[std::vector<std::string>(a.begin() + i, a.begin() + i + n)];
        for (size_t i = 0; i + n <= r.size(); ++i) ++cr[std::vector<std::string>(r.begin() + i, r.begin() + i + n)];
        double match = 0, total = a.size() >= n ? static_cast<double>(a.size() - n + 1) : 0.0;
        for (const auto& [g, c] : ca) match += std::min(c, cr.count(g) ? cr[g] : 0);
        if (n == 1 && match == 0) return 0.0;
        const double p = n == 1 ? match / total : (match + 1) / (total + 1);
        log_sum += std::log(p) / 4;
    }
    const double bp = a.size() >= r.size() ? 1.0 : std::exp(1.0 - static_cast<double>(r.size()) / a.size());
    return bp * std::exp(log_sum);
}

double rouge_l(const std::vector<std::string>& a, const std::vector<std::string>& r) {
    if (a.empty() || r.empty()) return 0.0;
    std::vector<std::vector<int>> L(a.size() + 1, std::vector<int>(r.size() + 1, 0));
    for (size_t i = 1; i <= a.size(); ++i)
        for (size_t j = 1; j <= r.size(); ++j)
            L[i][j] = a[i - 1] == r[j - 1] ? L[i - 1][j - 1] + 1 : std::max(L[i - 1][j], L[i][j - 1]);
    const double lcs = L[a.size()][r.size()];
    if (lcs == 0) return 0.0;
    const double p = lcs / a.size(), rc = lcs / r.size();
    return 2 * p * rc / (p + rc);
}

class TextSimilarity {
public:
    TextSimilarity(const fthost::Host&, const fthost::Config& cfg)
        : metric_(cfg.get_string("metric")), threshold_(cfg.get_float("pass_threshold")) {}

    static void validate(const fthost::Config& cfg) {
        const std::string m = cfg.get_string("metric");
        if (m != "f1" && m != "bleu" && m != "rouge_l") cfg.fail("metric", "must be f1, bleu or rouge_l (got \"" + m + "\")");
        const double t = cfg.get_float("pass_threshold");
        if (t < 0 || t > 1) cfg.fail("pass_threshold", "must be in [0, 1]");
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        if (!item.reference) return std::nan("");
        const bool squad = metric_ == "f1";
        const auto a = tokens(item.completion ? item.completion : "", squad), r = tokens(item.reference, squad);
        const double s = metric_ == "f1" ? f1(a, r) : metric_ == "bleu" ? bleu(a, r) : rouge_l(a, r);
        reason = metric_ + " " + std::to_string(s);
        if (threshold_ > 0) return s >= threshold_ ? 1.0 : 0.0;
        return s;
    }

private:
    std::string metric_;
    double threshold_;
};

}  // namespace

FTHOST_GRADER(text_similarity, TextSimilarity, "text_similarity", "0.1.0",
              "token F1, BLEU-4 or ROUGE-L of the answer against the reference", kOptions, FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(text_similarity)
