// text_similarity — how close the model's answer is to the reference, in [0, 1]:
//   f1       token F1 (precision and recall of the bag of tokens), as SQuAD scores
//   bleu     sentence BLEU-4: geometric mean of 1..4-gram precisions with add-one
//            smoothing for n > 1 (Lin & Och 2004), times the brevity penalty
//   rouge_l  ROUGE-L F-measure (beta = 1) from the longest common subsequence
//   sari     SARI (Xu et al. 2016) of the answer against the source and the references,
//            exactly as Hugging Face evaluate's `sari` computes it, divided by 100
// Tokenisation of f1, bleu, rouge_l (documented, the same for all three): lowercase; every
// character that is not a letter, digit or whitespace becomes a space; split on whitespace;
// for f1 the articles a/an/the are dropped, as SQuAD's normalisation does. sari normalises
// as evaluate does instead: Python's str.lower() (python_case.hpp), sacrebleu's 13a
// tokenizer, then split on spaces (see sari() below). With pass_threshold > 0 the score
// becomes 1 when it reaches the threshold, else 0. No reference (or, for sari, no source): NaN.
#include "python_case.hpp"

#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("metric", FT_OPT_STRING, "\"f1\"", "f1, bleu, rouge_l or sari (scored as SARI / 100)"),
    option("pass_threshold", FT_OPT_FLOAT, "0.0", "score 1 at or above this similarity, else 0 (0 = raw score)"),
    option("source_field", FT_OPT_STRING, "\"prompt\"",
           "sari: the row field holding the source (a string, or chat messages: the last user turn)"),
    option("instruction_delimiter", FT_OPT_STRING, "\"\"",
           "sari: drop the source up to and including the first occurrence of this (\": \" for CoEdIT prompts)"),
    option("references_field", FT_OPT_STRING, "\"references\"",
           "sari: a row field with a list of references, used instead of the reference when present"),
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

// ---- sari -----------------------------------------------------------------------------
// Hugging Face evaluate's metrics/sari/sari.py, line for line (evaluate 0.4.6; the script is
// unchanged since March 2023; tests/fixtures/make_sari_fixtures.py records its hash):
//   normalise each sentence: Python's str.lower(), then sacrebleu's 13a tokenizer, then
//   split on " " (so an empty sentence is the one token "");
//   for n = 1..4, with S, C the n-gram counts of source and candidate times the number of
//   references, and R the n-gram counts summed over the references (Python Counter
//   arithmetic: & is the minimum, - the positive difference):
//     keep  = F1 of  P = mean over g in K = S & C of (K & R)[g] / K[g],
//                    R = sum (K & R) / sum (S & R)
//     del   = P only: mean over g in D = S - C of (D - R)[g] / D[g]
//     add   = F1 of sets: A = set(C) - set(S), P = |A & set(R)| / |A|,
//                    R = |A & set(R)| / |set(R) - set(S)|
//   each P or R over an empty set is 1 (0/0 = 1), an F1 with P = R = 0 is 0;
//   SARI = (mean_n keep + mean_n del + mean_n add) / 3, in [0, 1] (evaluate reports 100x).

namespace pycase = text_similarity_case;

template <size_t N>
bool in_ranges(const pycase::Range (&table)[N], uint32_t c) {
    const auto* it = std::upper_bound(table, table + N, c, [](uint32_t v, const pycase::Range& r) { return v < r.first; });
    return it != table && c <= (it - 1)->last;
}

// UTF-8 to code points; a byte that does not start a valid sequence becomes U+DC80 + byte
// (Python's surrogateescape) and is written back unchanged.
std::vector<uint32_t> decode_utf8(const std::string& s) {
    std::vector<uint32_t> out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
        uint32_t c = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
        bool ok = len > 0 && i + len <= s.size();
        for (int k = 1; ok && k < len; ++k) {
            const auto cb = static_cast<unsigned char>(s[i + k]);
            ok = (cb & 0xC0) == 0x80;
            c = (c << 6) | (cb & 0x3F);
        }
        static const uint32_t min_of_len[] = {0, 0, 0x80, 0x800, 0x10000};
        ok = ok && c >= min_of_len[len] && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
        if (ok) {
            out.push_back(c);
            i += len;
        } else {
            out.push_back(0xDC00 + b);
            ++i;
        }
    }
    return out;
}

void encode_utf8(uint32_t c, std::string& out) {
    if (c >= 0xDC80 && c <= 0xDCFF) out.push_back(static_cast<char>(c - 0xDC00));  // an escaped byte
    else if (c < 0x80) out.push_back(static_cast<char>(c));
    else if (c < 0x800) out += {static_cast<char>(0xC0 | c >> 6), static_cast<char>(0x80 | (c & 0x3F))};
    else if (c < 0x10000)
        out += {static_cast<char>(0xE0 | c >> 12), static_cast<char>(0x80 | (c >> 6 & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
    else
        out += {static_cast<char>(0xF0 | c >> 18), static_cast<char>(0x80 | (c >> 12 & 0x3F)),
                static_cast<char>(0x80 | (c >> 6 & 0x3F)), static_cast<char>(0x80 | (c & 0x3F))};
}

uint32_t lower_code_point(uint32_t c) {
    const auto& t = pycase::kLower;
    const auto* it = std::upper_bound(std::begin(t), std::end(t), c,
                                      [](uint32_t v, const pycase::LowerRun& r) { return v < r.first; });
    if (it == std::begin(t)) return c;
    --it;
    return c <= it->last && (c - it->first) % it->step == 0 ? static_cast<uint32_t>(static_cast<int64_t>(c) + it->delta) : c;
}

// Python's str.lower(): the one-code-point mappings, U+0130 -> "i" U+0307, and capital sigma
// as final sigma after a cased letter not followed by one (case-ignorables skipped), as
// CPython's handle_capital_sigma does.
std::string python_lower(const std::string& text) {
    const auto cps = decode_utf8(text);
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < cps.size(); ++i) {
        const uint32_t c = cps[i];
        if (c == 0x130) {
            out += "i\xcc\x87";
        } else if (c == 0x3A3) {
            size_t j = i;
            while (j > 0 && in_ranges(pycase::kCaseIgnorable, cps[j - 1])) --j;
            bool final_sigma = j > 0 && in_ranges(pycase::kCased, cps[j - 1]);
            if (final_sigma) {
                j = i + 1;
                while (j < cps.size() && in_ranges(pycase::kCaseIgnorable, cps[j])) ++j;
                final_sigma = j == cps.size() || !in_ranges(pycase::kCased, cps[j]);
            }
            encode_utf8(final_sigma ? 0x3C2 : 0x3C3, out);
        } else {
            encode_utf8(lower_code_point(c), out);
        }
    }
    return out;
}

// Python's str.replace (every occurrence, left to right, not overlapping).
std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    std::string out;
    size_t at = 0;
    for (size_t p; (p = s.find(from, at)) != std::string::npos; at = p + from.size()) out.append(s, at, p - at) += to;
    return out.append(s, at, std::string::npos);
}

// One re.sub of a two-character pattern (A)(B): leftmost matches, not overlapping. The 13a
// classes are ASCII, and [^0-9] takes every other byte, so bytes give what code points do.
template <class Match, class Emit>
std::string sub_pairs(const std::string& s, Match match, Emit emit) {
    std::string out;
    size_t i = 0;
    for (; i + 1 < s.size(); ++i) {
        if (match(s[i], s[i + 1])) {
            emit(out, s[i], s[i + 1]);
            ++i;
        } else {
            out.push_back(s[i]);
        }
    }
    if (i < s.size()) out.push_back(s[i]);
    return out;
}

// sacrebleu 2.x's Tokenizer13a (tokenizer_13a.py, then TokenizerRegexp of tokenizer_re.py)
// without its final ' '.join(line.split()), which sari_tokens does.
std::string tokenize_13a(std::string line) {
    line = replace_all(line, "<skipped>", "");
    line = replace_all(line, "-\n", "");
    line = replace_all(line, "\n", " ");
    if (line.find('&') != std::string::npos) {
        line = replace_all(line, "&quot;", "\"");
        line = replace_all(line, "&amp;", "&");
        line = replace_all(line, "&lt;", "<");
        line = replace_all(line, "&gt;", ">");
    }
    line = " " + line + " ";
    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 '
    std::string spaced;
    for (const char ch : line) {
        const auto c = static_cast<unsigned char>(ch);
        if ((c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2B) ||
            (c >= 0x3A && c <= 0x40) || c == 0x2F)
            spaced += {' ', ch, ' '};
        else
            spaced.push_back(ch);
    }
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    const auto period_comma = [](char c) { return c == '.' || c == ','; };
    // ([^0-9])([\.,]) -> '\1 \2 '
    spaced = sub_pairs(spaced, [&](char a, char b) { return !digit(a) && period_comma(b); },
                       [](std::string& o, char a, char b) { o += {a, ' ', b, ' '}; });
    // ([\.,])([^0-9]) -> ' \1 \2'
    spaced = sub_pairs(spaced, [&](char a, char b) { return period_comma(a) && !digit(b); },
                       [](std::string& o, char a, char b) { o += {' ', a, ' ', b}; });
    // ([0-9])(-) -> '\1 \2 '
    return sub_pairs(spaced, [&](char a, char b) { return digit(a) && b == '-'; },
                     [](std::string& o, char a, char b) { o += {a, ' ', b, ' '}; });
}

// evaluate's normalize() (lowercase, 13a) and SARIsent's split(" "): Python's str.split()
// on its whitespace, and the one empty token of an empty sentence.
std::vector<std::string> sari_tokens(const std::string& text) {
    std::vector<std::string> out;
    std::string word;
    for (const uint32_t c : decode_utf8(tokenize_13a(python_lower(text)))) {
        if (in_ranges(pycase::kSpace, c)) {
            if (!word.empty()) out.push_back(std::move(word));
            word.clear();
        } else {
            encode_utf8(c, word);
        }
    }
    if (!word.empty()) out.push_back(std::move(word));
    if (out.empty()) out.emplace_back();
    return out;
}

std::vector<std::string> ngrams(const std::vector<std::string>& w, size_t n) {
    std::vector<std::string> out;
    for (size_t i = 0; i + n <= w.size(); ++i) {
        std::string g = w[i];
        for (size_t k = 1; k < n; ++k) g += " " + w[i + k];
        out.push_back(std::move(g));
    }
    return out;
}

struct SariParts {
    double keep = 0, del = 0, add = 0;
};

// evaluate's SARIngram for one n.
SariParts sari_ngram(const std::vector<std::string>& s, const std::vector<std::string>& c,
                     const std::vector<std::vector<std::string>>& refs) {
    using Counts = std::map<std::string, int64_t>;
    const auto num_ref = static_cast<int64_t>(refs.size());
    Counts r, s_rep, c_rep;
    for (const auto& grams : refs)
        for (const auto& g : grams) ++r[g];
    for (const auto& g : s) s_rep[g] += num_ref;
    for (const auto& g : c) c_rep[g] += num_ref;
    const auto count = [](const Counts& m, const std::string& g) {
        const auto it = m.find(g);
        return it == m.end() ? int64_t{0} : it->second;
    };
    const auto f1 = [](double p, double rc) { return p > 0 || rc > 0 ? 2 * p * rc / (p + rc) : 0.0; };
    SariParts out;

    Counts keep, keep_good;  // keep = S & C, keep_good = keep & R
    int64_t keep_all = 0;    // sum(S & R)
    bool any_keep_all = false;
    for (const auto& [g, n] : s_rep) {
        if (const int64_t k = std::min(n, count(c_rep, g)); k > 0) keep[g] = k;
        if (const int64_t a = std::min(n, count(r, g)); a > 0) keep_all += a, any_keep_all = true;
    }
    double keep_p_sum = 0;
    int64_t keep_good_sum = 0;
    for (const auto& [g, n] : keep)
        if (const int64_t k = std::min(n, count(r, g)); k > 0) {
            keep_p_sum += static_cast<double>(k) / static_cast<double>(n);
            keep_good_sum += k;
        }
    const double keep_p = keep.empty() ? 1.0 : keep_p_sum / static_cast<double>(keep.size());
    const double keep_r = any_keep_all ? static_cast<double>(keep_good_sum) / static_cast<double>(keep_all) : 1.0;
    out.keep = f1(keep_p, keep_r);

    size_t deleted = 0;  // |S - C|
    double del_p_sum = 0;
    for (const auto& [g, n] : s_rep) {
        const int64_t d = n - count(c_rep, g);
        if (d <= 0) continue;
        ++deleted;
        if (const int64_t good = d - count(r, g); good > 0) del_p_sum += static_cast<double>(good) / static_cast<double>(d);
    }
    out.del = deleted == 0 ? 1.0 : del_p_sum / static_cast<double>(deleted);

    size_t added = 0, added_good = 0, addable = 0;
    for (const auto& [g, n] : c_rep)
        if (!s_rep.count(g)) ++added, added_good += r.count(g);
    for (const auto& [g, n] : r) addable += !s_rep.count(g);
    const double add_p = added == 0 ? 1.0 : static_cast<double>(added_good) / static_cast<double>(added);
    const double add_r = addable == 0 ? 1.0 : static_cast<double>(added_good) / static_cast<double>(addable);
    out.add = f1(add_p, add_r);
    return out;
}

// evaluate's SARIsent on normalised sentences: the mean over n = 1..4 of each part, then
// the mean of the three.
SariParts sari(const std::string& source, const std::string& prediction, const std::vector<std::string>& references,
               double& score) {
    const auto s = sari_tokens(source), c = sari_tokens(prediction);
    std::vector<std::vector<std::string>> r;
    for (const auto& ref : references) r.push_back(sari_tokens(ref));
    SariParts sum;
    for (size_t n = 1; n <= 4; ++n) {
        std::vector<std::vector<std::string>> rn;
        for (const auto& words : r) rn.push_back(ngrams(words, n));
        const SariParts p = sari_ngram(ngrams(s, n), ngrams(c, n), rn);
        sum.keep += p.keep, sum.del += p.del, sum.add += p.add;
    }
    const SariParts mean{sum.keep / 4, sum.del / 4, sum.add / 4};
    score = (mean.keep + mean.del + mean.add) / 3;
    return mean;
}

// The text of the last user turn of chat messages ([{"role", "content"}, ...]).
std::optional<std::string> last_user_turn(const nlohmann::json& messages) {
    if (!messages.is_array()) return std::nullopt;
    for (auto it = messages.rbegin(); it != messages.rend(); ++it)
        if (it->is_object() && it->value("role", "") == "user" && it->contains("content") && (*it)["content"].is_string())
            return (*it)["content"].get<std::string>();
    return std::nullopt;
}

class TextSimilarity {
public:
    TextSimilarity(const fthost::Host&, const fthost::Config& cfg)
        : metric_(cfg.get_string("metric")),
          threshold_(cfg.get_float("pass_threshold")),
          source_field_(cfg.get_string("source_field")),
          delimiter_(cfg.get_string("instruction_delimiter")),
          references_field_(cfg.get_string("references_field")) {
        validate(cfg);
    }

    static void validate(const fthost::Config& cfg) {
        const std::string m = cfg.get_string("metric");
        if (m != "f1" && m != "bleu" && m != "rouge_l" && m != "sari")
            cfg.fail("metric", "must be f1, bleu, rouge_l or sari (got \"" + m + "\")");
        const double t = cfg.get_float("pass_threshold");
        if (t < 0 || t > 1) cfg.fail("pass_threshold", "must be in [0, 1]");
        const std::pair<const char*, const char*> sari_only[] = {
            {"source_field", "prompt"}, {"instruction_delimiter", ""}, {"references_field", "references"}};
        for (const auto& [key, fallback] : sari_only) {
            const std::string v = cfg.get_string(key);
            if (m != "sari" && v != fallback) cfg.fail(key, "is read only by metric = \"sari\" (metric is \"" + m + "\")");
        }
        if (m == "sari" && cfg.get_string("source_field").empty()) cfg.fail("source_field", "must name a row field");
        if (m == "sari" && cfg.get_string("references_field").empty()) cfg.fail("references_field", "must name a row field");
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        if (metric_ == "sari") return finish(grade_sari(item, reason));
        if (!item.reference) return std::nan("");
        const bool squad = metric_ == "f1";
        const auto a = tokens(item.completion ? item.completion : "", squad), r = tokens(item.reference, squad);
        const double s = metric_ == "f1" ? f1(a, r) : metric_ == "bleu" ? bleu(a, r) : rouge_l(a, r);
        reason = metric_ + " " + std::to_string(s);
        return finish(s);
    }

private:
    double finish(double s) const {
        if (threshold_ > 0 && !std::isnan(s)) return s >= threshold_ ? 1.0 : 0.0;
        return s;
    }

    // The source from the row's source_field (after instruction_delimiter), the references
    // from its references_field list or else the item's reference; NaN when either is missing.
    double grade_sari(const ft_grade_item& item, std::string& reason) const {
        const auto row = nlohmann::json::parse(item.row_json ? item.row_json : "", nullptr, false);
        const bool have_row = !row.is_discarded() && row.is_object();
        std::string source;
        if (have_row && row.contains(source_field_)) {
            const auto& v = row[source_field_];
            if (v.is_string()) {
                source = v.get<std::string>();
            } else if (const auto turn = last_user_turn(v)) {
                source = *turn;
            } else {
                reason = "field '" + source_field_ + "' is neither text nor messages with a user turn";
                return std::nan("");
            }
        } else if (!have_row && source_field_ == "prompt" && item.prompt) {
            source = item.prompt;  // no row JSON to read: the item's prompt
        } else {
            reason = "row has no '" + source_field_ + "' (the source; see source_field)";
            return std::nan("");
        }
        if (!delimiter_.empty())
            if (const size_t at = source.find(delimiter_); at != std::string::npos) source.erase(0, at + delimiter_.size());

        std::vector<std::string> refs;
        if (have_row && row.contains(references_field_) && !(row[references_field_].is_array() && row[references_field_].empty())) {
            const auto& list = row[references_field_];
            for (const auto& r : list.is_array() ? list : nlohmann::json::array({nullptr})) {
                if (!r.is_string()) {
                    reason = "field '" + references_field_ + "' must be a list of strings";
                    return std::nan("");
                }
                refs.push_back(r.get<std::string>());
            }
        } else if (item.reference && *item.reference) {
            refs.emplace_back(item.reference);
        } else {
            reason = "no reference";
            return std::nan("");
        }
        double score = 0;
        const SariParts p = sari(source, item.completion ? item.completion : "", refs, score);
        char buf[128];
        std::snprintf(buf, sizeof buf, "sari %.4f (keep %.4f, delete %.4f, add %.4f; %zu reference%s)", score, p.keep, p.del,
                      p.add, refs.size(), refs.size() == 1 ? "" : "s");
        reason = buf;
        return score;
    }

    std::string metric_;
    double threshold_;
    std::string source_field_, delimiter_, references_field_;
};

}  // namespace

FTHOST_GRADER(text_similarity, TextSimilarity, "text_similarity", "0.1.0",
              "token F1, BLEU-4, ROUGE-L or SARI of the answer against the reference", kOptions, FT_PLUGIN_THREAD_SAFE);
FTHOST_PLUGINS(text_similarity)
