// fuzz_support.hpp — what the libFuzzer targets of tests/fuzz share: a private scratch
// folder for the files the real code paths read (configs, JSONL, safetensors,
// tokenizer.json), the build's plugin registry, and the one rule of every target: the
// documented error path (fthost::Error, or the diagnostics of a config) is caught,
// anything else — a crash, a sanitizer report, another exception — is a finding.
#pragma once

#include "registry/plugin_registry.hpp"

#include <fthost/plugin.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace fthost::fuzz {

namespace fs = std::filesystem;

// /tmp/fthost-fuzz-<pid>, removed at exit (the corpus never goes here: scripts/fuzz.sh).
inline const fs::path& scratch() {
    struct Dir {
        fs::path p;
        Dir() {
            p = fs::temp_directory_path() / ("fthost-fuzz-" + std::to_string(::getpid()));
            fs::create_directories(p);
        }
        ~Dir() {
            std::error_code ec;
            fs::remove_all(p, ec);
        }
    };
    static Dir d;
    return d.p;
}

inline std::string write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p.string();
}

inline std::string scratch_file(const std::string& name, const std::string& bytes) {
    return write_file(scratch() / name, bytes);
}

// The build's plugins, loaded once (refusals are not printed).
inline const host::PluginRegistry& registry() {
    static host::PluginRegistry reg = [] {
        host::PluginRegistry r;
        r.print_refusals = false;
        r.load_directory(FTHOST_BUILD_PLUGIN_DIR);
        return r;
    }();
    return reg;
}

// An exception that is not the documented error path: say what it was, then abort so
// that libFuzzer records the input as a crash.
[[noreturn]] inline void unexpected(const char* where, const char* what) {
    std::fprintf(stderr, "\n==fthost-fuzz== %s: unexpected exception: %s\n", where, what);
    std::fflush(stderr);
    std::abort();
}

// An invariant of the documented interface that the result breaks.
#define FTHOST_FUZZ_CHECK(cond)                                                                 \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "\n==fthost-fuzz== check failed: %s (%s:%d)\n", #cond, __FILE__, \
                         __LINE__);                                                             \
            std::fflush(stderr);                                                                \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

// Runs body; fthost::Error is the documented way to refuse input, anything else aborts.
template <class F>
void expect_only_errors(const char* where, F&& body) {
    try {
        body();
    } catch (const fthost::Error&) {
    } catch (const std::exception& e) {
        unexpected(where, e.what());
    } catch (...) {
        unexpected(where, "(not a std::exception)");
    }
}

}  // namespace fthost::fuzz
