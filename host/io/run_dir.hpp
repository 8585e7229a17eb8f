// run_dir.hpp — the run directory a user and a script can rely on:
//   config.toml  manifest.json  metrics.jsonl  summary.json  stages/<name>/{final,checkpoints}/
// Every file except metrics.jsonl (append-only, one JSON object per line) is replaced
// atomically, so an interrupted run never leaves a half-written file behind. In a
// distributed run only rank 0 writes: the other ranks' RunDir is read-only, and its
// writes do nothing.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace fthost::host {

class RunDir {
public:
    explicit RunDir(std::filesystem::path root) : root_(std::move(root)) {}
    ~RunDir();
    RunDir(const RunDir&) = delete;
    RunDir& operator=(const RunDir&) = delete;
    const std::filesystem::path& root() const { return root_; }
    // False on the ranks that do not write the run directory: metrics and JSON writes are skipped.
    bool writes() const { return writes_; }
    void set_writes(bool on) { writes_ = on; }
    std::filesystem::path stage_dir(const std::string& stage) const { return root_ / "stages" / stage; }
    std::filesystem::path final_dir(const std::string& stage) const { return stage_dir(stage) / "final"; }
    std::filesystem::path checkpoints_dir(const std::string& stage) const { return stage_dir(stage) / "checkpoints"; }

    // Appends one line to metrics.jsonl with one write(2), so a reader never sees half a
    // line; a failed write (disk full) is cut back off and throws naming the file. Here
    // and in write_json, strings that are not valid UTF-8 are written with U+FFFD for
    // their invalid bytes.
    void append_metrics(const nlohmann::json& line);
    // Size of metrics.jsonl in bytes (stored in checkpoints), and truncation back to it.
    uint64_t metrics_size() const;
    void truncate_metrics(uint64_t size);
    // Removes a stage's lines (an earlier attempt that left no checkpoint).
    void drop_metrics_of(const std::string& stage);

    nlohmann::json read_json(const std::string& name) const;
    void write_json(const std::string& name, const nlohmann::json& j) const;

private:
    void close_metrics();

    std::filesystem::path root_;
    bool writes_ = true;
    int metrics_fd_ = -1;  // metrics.jsonl, open for appending once the first line is written
};

}  // namespace fthost::host
