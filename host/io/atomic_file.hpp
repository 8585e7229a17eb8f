// atomic_file.hpp — files and directories that appear whole or not at all: written
// under a temporary name in the same directory, synced to disk, then renamed into
// place. A failed write (a full disk, a read-only folder) removes the temporary and
// throws an Error naming the file and the system's reason.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>

namespace fthost::host {

void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);
void write_text_atomically(const std::filesystem::path& path, const std::string& text);

// Truncates `path` and writes `text` into it in place — not atomic. For the last record a
// process leaves when an atomic write failed for want of space: truncating first frees
// the file's own blocks for the new text. Throws like write_file_atomically.
void overwrite_text_in_place(const std::filesystem::path& path, const std::string& text);

// Fills a fresh temporary sibling directory with fill(tmp_dir), then renames it to
// `dir`, replacing an existing one. A crash leaves either the old or the new directory
// (plus at most a stale ".tmp-" sibling that the next call removes).
void write_directory_atomically(const std::filesystem::path& dir,
                                const std::function<void(const std::filesystem::path&)>& fill);

std::string read_text(const std::filesystem::path& path);

// "cannot write <path>: <strerror(err)>", with what to do when the disk is full.
std::string write_error(const std::filesystem::path& path, int err);

}  // namespace fthost::host
