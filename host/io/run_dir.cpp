#include "io/run_dir.hpp"

#include "io/atomic_file.hpp"
#include "io/utf8.hpp"

#include <fthost/plugin.hpp>

#include <cerrno>
#include <fcntl.h>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fthost::host {

RunDir::~RunDir() { close_metrics(); }

void RunDir::close_metrics() {
    if (metrics_fd_ >= 0) ::close(metrics_fd_);
    metrics_fd_ = -1;
}

void RunDir::append_metrics(const nlohmann::json& line) {
    if (!writes_) return;
    const fs::path f = root_ / "metrics.jsonl";
    if (metrics_fd_ < 0) metrics_fd_ = ::open(f.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (metrics_fd_ < 0) throw Error(write_error(f, errno));
    const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    struct stat st {};
    const off_t before = ::fstat(metrics_fd_, &st) == 0 ? st.st_size : -1;
    const ssize_t w = ::write(metrics_fd_, text.data(), text.size());
    if (w == static_cast<ssize_t>(text.size())) return;
    const int err = w < 0 ? errno : ENOSPC;  // a short write: the disk filled up
    if (before >= 0 && ::ftruncate(metrics_fd_, before) != 0) {
        // nothing more to do: the partial line stays, and resume truncates to its checkpoint
    }
    throw Error(write_error(f, err));
}

uint64_t RunDir::metrics_size() const {
    std::error_code ec;
    const auto n = fs::file_size(root_ / "metrics.jsonl", ec);
    return ec ? 0 : n;
}

void RunDir::truncate_metrics(uint64_t size) {
    if (!writes_) return;
    close_metrics();
    if (fs::exists(root_ / "metrics.jsonl")) fs::resize_file(root_ / "metrics.jsonl", size);
}

void RunDir::drop_metrics_of(const std::string& stage) {
    if (!writes_) return;
    close_metrics();
    const fs::path f = root_ / "metrics.jsonl";
    if (!fs::exists(f)) return;
    std::istringstream in(read_text(f));
    std::string kept;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object() || j.value("stage", "") != stage) kept += line + "\n";
    }
    write_text_atomically(f, kept);
}

nlohmann::json RunDir::read_json(const std::string& name) const {
    try {
        return nlohmann::json::parse(read_text(root_ / name));
    } catch (const nlohmann::json::exception& e) {
        throw Error((root_ / name).string() + ": " + utf8_lossy(e.what()));
    }
}

void RunDir::write_json(const std::string& name, const nlohmann::json& j) const {
    if (!writes_) return;
    // Strings with invalid UTF-8 (an error quoting a data row's bytes) become U+FFFD
    // instead of making dump throw and hiding what was being recorded.
    write_text_atomically(root_ / name, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace fthost::host
