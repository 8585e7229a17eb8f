#include "io/run_dir.hpp"

#include "io/atomic_file.hpp"
#include "io/utf8.hpp"

#include <fthost/plugin.hpp>

#include <sstream>

namespace fs = std::filesystem;

namespace fthost::host {

void RunDir::append_metrics(const nlohmann::json& line) {
    if (!metrics_.is_open()) metrics_.open(root_ / "metrics.jsonl", std::ios::app);
    metrics_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    metrics_.flush();
}

uint64_t RunDir::metrics_size() const {
    std::error_code ec;
    const auto n = fs::file_size(root_ / "metrics.jsonl", ec);
    return ec ? 0 : n;
}

void RunDir::truncate_metrics(uint64_t size) {
    if (metrics_.is_open()) metrics_.close();
    if (fs::exists(root_ / "metrics.jsonl")) fs::resize_file(root_ / "metrics.jsonl", size);
}

void RunDir::drop_metrics_of(const std::string& stage) {
    if (metrics_.is_open()) metrics_.close();
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
    // Strings with invalid UTF-8 (an error quoting a data row's bytes) become U+FFFD
    // instead of making dump throw and hiding what was being recorded.
    write_text_atomically(root_ / name, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace fthost::host
