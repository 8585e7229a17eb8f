// sha256.hpp — SHA-256 of a file, for the manifest (plugins, datasets, base models).
#pragma once

#include <string>

namespace fthost::host {

// Lowercase hex digest; throws if the file cannot be read.
std::string sha256_file(const std::string& path);
std::string sha256_bytes(const std::string& data);

}  // namespace fthost::host
