// jsonl_reader.hpp — reads JSON Lines: one object per line, errors named file:line.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace fthost::host {

struct JsonlStats {
    int64_t rows = 0;
    int64_t skipped = 0;  // malformed lines counted when skip_malformed
};

// Calls on_row(object, line_number) for each non-blank line. A line that is not a JSON
// object, or that on_row rejects by throwing, is an error "file:line: why" — or is
// counted and skipped when skip_malformed.
JsonlStats read_jsonl(const std::string& file, bool skip_malformed,
                      const std::function<void(const nlohmann::json&, int64_t line)>& on_row);

}  // namespace fthost::host
