// utf8.hpp — making bytes valid UTF-8, for text that goes into JSON (summary.json,
// metrics.jsonl, stage.json: nlohmann's dump refuses invalid UTF-8) or into an error
// message that quotes a file's bytes.
#pragma once

#include <string>

namespace fthost::host {

// Bytes -> valid UTF-8: each maximal invalid sequence becomes U+FFFD (as Rust's
// String::from_utf8_lossy, which `tokenizers` uses). Valid UTF-8 is returned unchanged.
std::string utf8_lossy(const std::string& bytes);

}  // namespace fthost::host
