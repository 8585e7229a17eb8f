#include "data/jsonl_reader.hpp"

#include <fthost/plugin.hpp>

#include <fstream>
#include <iostream>

namespace fthost::host {

JsonlStats read_jsonl(const std::string& file, bool skip_malformed,
                      const std::function<void(const nlohmann::json&, int64_t)>& on_row) {
    std::ifstream in(file);
    if (!in) throw Error(file + ": cannot open data file", FT_ERR_CONFIG);
    JsonlStats stats;
    std::string line;
    int64_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        std::string why;
        try {
            auto row = nlohmann::json::parse(line);
            if (!row.is_object()) throw std::runtime_error("a line must be a JSON object");
            on_row(row, n);
            ++stats.rows;
            continue;
        } catch (const nlohmann::json::parse_error& e) {
            why = std::string("malformed JSON (") + e.what() + ")";
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (!skip_malformed) throw Error(file + ":" + std::to_string(n) + ": " + why, FT_ERR_CONFIG);
        ++stats.skipped;
    }
    return stats;
}

}  // namespace fthost::host
