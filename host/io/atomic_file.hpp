// atomic_file.hpp — files and directories that appear whole or not at all: written
// under a temporary name in the same directory, flushed, then renamed into place.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

namespace fthost::host {

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

// Fills a fresh temporary sibling directory with fill(tmp_dir), then renames it to
// `dir`, replacing an existing one. A crash leaves either the old or the new directory
// (plus at most a stale ".tmp-" sibling that the next call removes).
void write_directory_atomically(const std::filesystem::path& dir,
                                const std::function<void(const std::filesystem::path&)>& fill);

std::string read_text(const std::filesystem::path& path);

}  // namespace fthost::host
