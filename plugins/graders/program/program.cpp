// program — scores with an external executable, once per batch of items: the items go
// to its stdin as JSON, {"items": [{"prompt", "completion", "reference", "row"}, ...]},
// and it prints {"scores": [...]} (or a bare array) with one number or null per item.
// Scores are clamped to [0, 1]; null means not applicable (NaN). The program runs in
// the sandbox of sandbox.hpp: a clean environment (PATH, LANG and the configured `env`
// entries only), no inherited descriptors, its own user, network and mount namespaces
// where the kernel allows — the last with a root holding only the system directories,
// its command's files and the granted paths (file_sandbox.hpp) — (a warning names each
// guarantee it could not get), address-space,
// CPU-time and process limits, an output cap, and a wall clock after which it and every
// descendant are killed — all descendants are killed when the batch ends anyway. A crash, a
// non-zero exit, a timeout or unreadable output fails the batch: grade returns an error
// with the reason, and the host applies the grader's on_error (docs/GRADERS.md).
#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include "sandbox.hpp"
#include "score_output.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <optional>
#include <sys/wait.h>

namespace {

using fthost::option;
using nlohmann::json;

const ft_option kOptions[] = {
    option("command", FT_OPT_STRING_LIST, nullptr, "the program and its arguments, e.g. [\"python3\", \"grade.py\"]", true),
    option("timeout_s", FT_OPT_FLOAT, "30.0", "wall-clock limit per batch; the program is killed after it"),
    option("memory_mb", FT_OPT_INT, "2048", "address-space limit of the program (MiB)"),
    option("env", FT_OPT_STRING_LIST, "[]", "KEY=VALUE entries added to the program's otherwise clean environment"),
    option("cpu_s", FT_OPT_INT, "0", "CPU-time limit of the program (s); 0 = ceil(timeout_s) + 1"),
    option("max_output_mb", FT_OPT_INT, "64", "the most the program may print (MiB); more fails the batch"),
    option("max_processes", FT_OPT_INT, "256",
           "process limit of the program's tree (RLIMIT_NPROC in its own user namespace; not enforced for root); 0 = none"),
    option("filesystem", FT_OPT_STRING, "\"isolated\"",
           "isolated: the program sees only system directories, its command's files, read_paths and write_paths; "
           "shared: every file fthost's user can reach"),
    option("read_paths", FT_OPT_STRING_LIST, "[]", "files or folders the program may read (filesystem = isolated)"),
    option("write_paths", FT_OPT_STRING_LIST, "[]", "files or folders the program may read and write (filesystem = isolated)"),
    option("tmp_mb", FT_OPT_INT, "64", "size of the program's private /tmp (MiB, filesystem = isolated)"),
};

struct Outcome {
    bool ok = false;
    std::string out, why;
};

// The guarantees a batch did not get, each warned about once per process.
void warn_missing(const fthost::Host& host, uint32_t isolation, int64_t max_processes, bool files) {
    using namespace fthost_program;
    static std::atomic<bool> warned_net{false}, warned_root{false}, warned_nproc{false}, warned_files{false};
    if (files && !(isolation & kFilesIsolated) && !warned_files.exchange(true))
        host.log(FT_LOG_WARN, "program",
                 "grader sandbox: no mount namespace could be created (unshare CLONE_NEWNS refused): grader programs "
                 "CAN read and write every file fthost's user can, the run directory included");
    if (!(isolation & kNetworkIsolated) && !warned_net.exchange(true))
        host.log(FT_LOG_WARN, "program",
                 "grader sandbox: no network namespace could be created (unshare of CLONE_NEWUSER|CLONE_NEWNET and of "
                 "CLONE_NEWNET refused): grader programs HAVE network access on this machine");
    // As root outside a user namespace the program keeps CAP_SYS_PTRACE over fthost.
    if (!(isolation & kUserNamespace) && geteuid() == 0 && !warned_root.exchange(true))
        host.log(FT_LOG_WARN, "program",
                 "grader sandbox: no user namespace could be created: grader programs run as real root and CAN read "
                 "fthost's /proc/<pid>/environ and memory");
    if (max_processes > 0 && !(isolation & kProcessLimit) && !warned_nproc.exchange(true))
        host.log(FT_LOG_WARN, "program",
                 std::string("grader sandbox: max_processes is not enforced (") +
                     (geteuid() == 0 ? "the kernel does not apply RLIMIT_NPROC to root" : "no user namespace") + ")");
}

// Runs argv in the sandbox (sandbox.hpp) and turns what happened into an outcome.
Outcome run_program(const fthost::Host& host, const std::vector<std::string>& argv, const std::vector<std::string>& env,
                    const std::string& input, const fthost_program::Limits& lim, const fthost_program::FilePlan* files) {
    std::vector<std::string> envs = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"};
    envs.insert(envs.end(), env.begin(), env.end());
    const fthost_program::Result r = fthost_program::run_sandboxed(argv, envs, input, lim, files);
    if (r.started) warn_missing(host, r.isolation, lim.max_processes, files != nullptr);
    Outcome o;
    o.out = r.out;
    const int status = r.status;
    if (!r.error.empty()) o.why = "could not be run: " + r.error;
    else if (r.output_capped) o.why = "printed more than " + std::to_string(lim.max_output_bytes) + " bytes";
    else if (r.timed_out) o.why = "timed out after " + std::to_string(lim.timeout_s) + " s";
    else if (!r.exited) o.why = "could not be run: its supervisor died";
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU) o.why = "exceeded its CPU-time limit";
    else if (WIFSIGNALED(status)) o.why = "killed by signal " + std::to_string(WTERMSIG(status));
    else if (WEXITSTATUS(status) == 127) o.why = "could not start '" + argv[0] + "'";
    else if (WEXITSTATUS(status) != 0) o.why = "exited with status " + std::to_string(WEXITSTATUS(status));
    else o.ok = true;
    return o;
}

class Program {
public:
    Program(const fthost::Host& host, const fthost::Config& cfg)
        : host_(host),
          argv_(cfg.get_string_list("command")),
          env_(cfg.get_string_list("env")),
          limits_{cfg.get_float("timeout_s"), cfg.get_int("memory_mb"), cfg.get_int("cpu_s"),
                  cfg.get_int("max_output_mb") * (int64_t(1) << 20), cfg.get_int("max_processes")} {
        if (cfg.get_string("filesystem") == "isolated") {
            try {
                files_ = fthost_program::plan_file_sandbox(argv_, cfg.get_string_list("read_paths"),
                                                           cfg.get_string_list("write_paths"), cfg.get_int("tmp_mb"));
            } catch (const std::exception& e) {
                cfg.fail("read_paths", e.what());
            }
        }
    }

    static void validate(const fthost::Config& cfg) {
        const auto cmd = cfg.get_string_list("command");
        if (cmd.empty() || cmd[0].empty()) cfg.fail("command", "must name a program");
        if (cfg.get_float("timeout_s") <= 0) cfg.fail("timeout_s", "must be > 0");
        if (cfg.get_int("memory_mb") < 16) cfg.fail("memory_mb", "must be at least 16");
        if (cfg.get_int("cpu_s") < 0) cfg.fail("cpu_s", "must be >= 0");
        if (cfg.get_int("max_output_mb") < 1 || cfg.get_int("max_output_mb") > 4096)
            cfg.fail("max_output_mb", "must be in [1, 4096]");
        if (cfg.get_int("max_processes") < 0) cfg.fail("max_processes", "must be >= 0");
        const std::string fs = cfg.get_string("filesystem");
        if (fs != "isolated" && fs != "shared") cfg.fail("filesystem", "must be \"isolated\" or \"shared\", not \"" + fs + "\"");
        if (cfg.get_int("tmp_mb") < 1) cfg.fail("tmp_mb", "must be at least 1");
        for (const auto& e : cfg.get_string_list("env"))
            if (e.find('=') == std::string::npos || e.front() == '=') cfg.fail("env", "entries are KEY=VALUE, got \"" + e + "\"");
    }

    // The C++ layer grades one item at a time; the program sees the whole batch, so the
    // batch entry point is overridden below.
    void grade_batch(const ft_grade_item* items, uint32_t count, ft_grade_result* results) {
        json input = {{"items", json::array()}};
        for (uint32_t i = 0; i < count; ++i) {
            json row;
            try {
                row = items[i].row_json ? json::parse(items[i].row_json) : json();
            } catch (const json::parse_error&) {
                row = json();
            }
            input["items"].push_back({{"prompt", items[i].prompt ? items[i].prompt : ""},
                                      {"completion", items[i].completion ? items[i].completion : ""},
                                      {"reference", items[i].reference ? json(items[i].reference) : json()},
                                      {"row", row}});
        }
        const Outcome o = run_program(host_, argv_, env_, input.dump(-1, ' ', false, json::error_handler_t::replace), limits_,
                                      files_ ? &*files_ : nullptr);
        std::string why = o.why;
        std::vector<double> scores;
        if (o.ok) {
            try {
                scores = fthost_program::parse_scores(o.out, count);
            } catch (const std::exception& e) {
                why = std::string("unreadable output: ") + e.what();
            }
        }
        if (scores.empty() && count > 0) throw fthost::Error("program " + why, FT_ERR_RUNTIME);
        for (uint32_t i = 0; i < count; ++i) {
            results[i].score = scores[i];
            results[i].reason[0] = '\0';
        }
    }

    // Unused: grade_batch above handles every call.
    double grade(const ft_grade_item&, std::string&) const { return std::nan(""); }

private:
    fthost::Host host_;
    std::vector<std::string> argv_, env_;
    fthost_program::Limits limits_;
    std::optional<fthost_program::FilePlan> files_;  // filesystem = "isolated"
};

ft_status grade_batch(ft_grader* g, const ft_grade_item* items, uint32_t count, ft_grade_result* results, ft_error* err) {
    return fthost::guard(err, [&] { reinterpret_cast<Program*>(g)->grade_batch(items, count, results); });
}

// The generic table with the batch entry swapped for the program's.
const ft_grader_vtable kVtable = [] {
    ft_grader_vtable vt = fthost::detail::GraderThunks<Program>::vtable;
    vt.grade = &grade_batch;
    return vt;
}();

const ft_plugin_desc fthost_desc_program = {
    sizeof(ft_plugin_desc), FTHOST_ABI_MAJOR, FTHOST_ABI_MINOR, FT_KIND_GRADER, FT_PLUGIN_THREAD_SAFE, "program", "0.1.0",
    "scores from an external program (JSON on stdin and stdout) with timeout, memory and CPU limits", nullptr,
    fthost::detail::option_ptr(kOptions), fthost::detail::option_count(kOptions), &kVtable,
    fthost::detail::validate_fn<Program>()};

}  // namespace

FTHOST_PLUGINS(program)
