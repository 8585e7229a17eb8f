// category_grader — an external grader program for the `program` grader plugin (see
// configs/rft.toml): reads {"items": [{"prompt", "completion", "reference", "row"}]}
// on stdin and prints {"scores": [...]}. It gives partial credit, which exact match
// cannot: 1 for the right category, 0.25 for a neighbouring aisle (the mistakes the
// quickstart's data calls plausible), 0 otherwise. Any program that speaks this JSON
// works the same way — a Python script, a compiled checker, a call into a test suite.
#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <set>
#include <string>

namespace {

const std::map<std::string, std::set<std::string>> kNeighbours = {
    {"produce", {"frozen", "pantry"}},  {"dairy", {"frozen", "beverages"}}, {"bakery", {"pantry", "snacks"}},
    {"meat", {"seafood", "frozen"}},    {"seafood", {"meat", "frozen"}},    {"frozen", {"dairy", "snacks"}},
    {"beverages", {"dairy", "snacks"}}, {"snacks", {"pantry", "bakery"}},   {"pantry", {"snacks", "bakery"}},
    {"household", {"pantry", "snacks"}},
};

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

int main() {
    nlohmann::json in = nlohmann::json::parse(std::cin);
    nlohmann::json scores = nlohmann::json::array();
    for (const auto& item : in.at("items")) {
        if (!item["reference"].is_string()) {
            scores.push_back(nullptr);  // nothing to compare with: not applicable
            continue;
        }
        const std::string answer = trim(item["completion"].get<std::string>());
        const std::string right = trim(item["reference"].get<std::string>());
        const auto n = kNeighbours.find(right);
        if (answer == right) scores.push_back(1.0);
        else if (n != kNeighbours.end() && n->second.count(answer)) scores.push_back(0.25);
        else scores.push_back(0.0);
    }
    std::cout << nlohmann::json{{"scores", scores}}.dump() << "\n";
    return 0;
}
