// multi — combines named sub-graders into one score, as OpenAI's RFT multi grader does.
// The sub-graders are tables under the grader's own, run by the host first
// (FT_PLUGIN_COMBINES_GRADERS):
//   [[stage.grader]]
//   plugin = "multi"
//   formula = "0.7 * exact + 0.3 * sim"
//   [stage.grader.graders.exact]
//   plugin = "exact_match"
//   [stage.grader.graders.sim]
//   plugin = "text_similarity"
// `formula` uses the sub-graders' names, numbers, + − * / ^ (power), parentheses and
// min max abs floor ceil exp sqrt log; the result is clamped to [0, 1]. A formula that
// reads a sub-score that does not apply (NaN) does not apply either. Without a formula
// the score is the mean of the sub-scores that apply.
#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <memory>

namespace {

using fthost::option;

const ft_option kOptions[] = {
    option("formula", FT_OPT_STRING, "\"\"", "expression over the sub-graders' names (empty: their mean)"),
};

// An expression compiled once: each node is a function of the sub-scores by name.
using Scores = std::map<std::string, double>;
using Node = std::function<double(const Scores&)>;

class Parser {
public:
    explicit Parser(std::string text) : s_(std::move(text)) {}
    Node parse() {
        Node n = expr();
        skip();
        if (i_ != s_.size()) fail("unexpected '" + s_.substr(i_, 1) + "'");
        return n;
    }
    const std::vector<std::string>& names() const { return names_; }

private:
    [[noreturn]] void fail(const std::string& why) const {
        throw fthost::Error("formula \"" + s_ + "\" at " + std::to_string(i_ + 1) + ": " + why, FT_ERR_CONFIG);
    }
    void skip() {
        while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    bool eat(char c) {
        skip();
        if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
        return false;
    }
    Node expr() {
        Node left = term();
        for (;;) {
            if (eat('+')) left = [a = left, b = term()](const Scores& x) { return a(x) + b(x); };
            else if (eat('-')) left = [a = left, b = term()](const Scores& x) { return a(x) - b(x); };
            else return left;
        }
    }
    Node term() {
        Node left = power();
        for (;;) {
            if (eat('*')) left = [a = left, b = power()](const Scores& x) { return a(x) * b(x); };
            else if (eat('/')) left = [a = left, b = power()](const Scores& x) { return a(x) / b(x); };
            else return left;
        }
    }
    Node power() {
        Node base = unary();
        if (eat('^')) return [a = base, b = power()](const Scores& x) { return std::pow(a(x), b(x)); };
        return base;
    }
    Node unary() {
        if (eat('-')) return [a = unary()](const Scores& x) { return -a(x); };
        return primary();
    }
    Node primary() {
        skip();
        if (eat('(')) {
            Node n = expr();
            if (!eat(')')) fail("missing ')'");
            return n;
        }
        if (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.')) {
            size_t used = 0;
            const double v = std::stod(s_.substr(i_), &used);
            i_ += used;
            return [v](const Scores&) { return v; };
        }
        std::string name;
        while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) name += s_[i_++];
        if (name.empty()) fail(i_ < s_.size() ? "unexpected '" + s_.substr(i_, 1) + "'" : "unexpected end");
        if (!eat('(')) {
            names_.push_back(name);
            return [name](const Scores& x) {
                auto it = x.find(name);
                if (it == x.end()) throw fthost::Error("formula uses '" + name + "', which is not one of its sub-graders");
                return it->second;
            };
        }
        std::vector<Node> args;
        if (!eat(')')) {
            do args.push_back(expr());
            while (eat(','));
            if (!eat(')')) fail("missing ')' after the arguments of " + name);
        }
        static const std::map<std::string, std::function<double(double)>> unary_fns = {
            {"abs", [](double v) { return std::abs(v); }},   {"floor", [](double v) { return std::floor(v); }},
            {"ceil", [](double v) { return std::ceil(v); }}, {"exp", [](double v) { return std::exp(v); }},
            {"sqrt", [](double v) { return std::sqrt(v); }}, {"log", [](double v) { return std::log(v); }}};
        if (auto f = unary_fns.find(name); f != unary_fns.end()) {
            if (args.size() != 1) fail(name + " takes one argument");
            return [fn = f->second, a = args[0]](const Scores& x) { return fn(a(x)); };
        }
        if (name == "min" || name == "max") {
            if (args.empty()) fail(name + " needs arguments");
            const bool is_min = name == "min";
            return [args, is_min](const Scores& x) {
                double r = args[0](x);
                for (size_t k = 1; k < args.size(); ++k) r = is_min ? std::min(r, args[k](x)) : std::max(r, args[k](x));
                return r;
            };
        }
        fail("unknown function " + name + " (min max abs floor ceil exp sqrt log)");
    }

    std::string s_;
    size_t i_ = 0;
    std::vector<std::string> names_;
};

class Multi {
public:
    Multi(const fthost::Host&, const fthost::Config& cfg) {
        const std::string f = cfg.get_string("formula");
        if (!f.empty()) {
            Parser p(f);
            formula_ = p.parse();
            uses_ = p.names();
        }
    }

    static void validate(const fthost::Config& cfg) {
        const std::string f = cfg.get_string("formula");
        if (f.empty()) return;
        try {
            Parser(f).parse();
        } catch (const fthost::Error& e) {
            cfg.fail("formula", e.what());
        }
    }

    double grade(const ft_grade_item& item, std::string& reason) const {
        const auto j = nlohmann::json::parse(item.row_json ? item.row_json : "{}", nullptr, false);
        if (j.is_discarded() || !j.contains("scores")) throw fthost::Error("multi got no sub-grader scores (is the host older than ABI 1.1?)");
        Scores scores;
        for (const auto& [name, v] : j["scores"].items()) scores[name] = v.is_number() ? v.get<double>() : std::nan("");
        if (!formula_) {
            double sum = 0;
            int n = 0;
            for (const auto& [_, v] : scores)
                if (!std::isnan(v)) sum += v, ++n;
            return n ? sum / n : std::nan("");
        }
        for (const auto& name : uses_)
            if (scores.count(name) && std::isnan(scores[name])) return std::nan("");  // an input does not apply
        const double v = formula_(scores);
        reason = "formula " + std::to_string(v);
        return std::isnan(v) ? v : std::clamp(v, 0.0, 1.0);
    }

private:
    Node formula_;
    std::vector<std::string> uses_;
};

}  // namespace

FTHOST_GRADER(multi, Multi, "multi", "0.1.0", "named sub-graders combined by a formula (or their mean)", kOptions,
              FT_PLUGIN_THREAD_SAFE | FT_PLUGIN_COMBINES_GRADERS);
FTHOST_PLUGINS(multi)
