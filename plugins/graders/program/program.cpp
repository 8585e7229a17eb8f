// program — scores with an external executable, once per batch of items: the items go
// to its stdin as JSON, {"items": [{"prompt", "completion", "reference", "row"}, ...]},
// and it prints {"scores": [...]} (or a bare array) with one number or null per item.
// Scores are clamped to [0, 1]; null means not applicable (NaN). The program runs in
// its own process group with a clean environment (PATH, LANG and the configured `env`
// entries only — no inherited secrets), under an address-space limit (memory_mb) and a
// CPU-time limit, and is killed with its children when timeout_s passes. A crash, a
// non-zero exit, a timeout or unreadable output scores every item of the batch 0 with
// the reason, and is counted in a warning — the run never fails because a grader did.
#include <fthost/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using fthost::option;
using nlohmann::json;

const ft_option kOptions[] = {
    option("command", FT_OPT_STRING_LIST, nullptr, "the program and its arguments, e.g. [\"python3\", \"grade.py\"]", true),
    option("timeout_s", FT_OPT_FLOAT, "30.0", "wall-clock limit per batch; the program is killed after it"),
    option("memory_mb", FT_OPT_INT, "2048", "address-space limit of the program (MiB)"),
    option("env", FT_OPT_STRING_LIST, "[]", "KEY=VALUE entries added to the program's otherwise clean environment"),
};

struct Outcome {
    bool ok = false;
    std::string out, why;
};

// Runs argv with `input` on stdin; collects stdout until exit or the deadline.
Outcome run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& input,
                    double timeout_s, int64_t memory_mb) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return {false, "", std::string("pipe: ") + std::strerror(errno)};
    const pid_t pid = fork();
    if (pid < 0) return {false, "", std::string("fork: ") + std::strerror(errno)};
    if (pid == 0) {  // child: own process group, limits, clean environment
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(out[1], 1);
        const int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
        const rlim_t bytes = static_cast<rlim_t>(memory_mb) * 1024 * 1024;
        rlimit as{bytes, bytes};
        setrlimit(RLIMIT_AS, &as);
        const rlim_t cpu = static_cast<rlim_t>(std::ceil(timeout_s)) + 1;
        rlimit c{cpu, cpu};
        setrlimit(RLIMIT_CPU, &c);
        std::vector<std::string> envs = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"};
        envs.insert(envs.end(), env.begin(), env.end());
        std::vector<char*> args, envp;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        for (const auto& e : envs) envp.push_back(const_cast<char*>(e.c_str()));
        args.push_back(nullptr);
        envp.push_back(nullptr);
        if (argv[0].find('/') != std::string::npos) execve(argv[0].c_str(), args.data(), envp.data());
        else execvpe(argv[0].c_str(), args.data(), envp.data());
        _exit(127);
    }
    setpgid(pid, pid);
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);  // a program that exits without reading its input
    Outcome o;
    size_t written = 0;
    bool in_open = true, out_open = true, timed_out = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    if (input.empty()) close(in[1]), in_open = false;
    while (out_open) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd fds[2];
        nfds_t n = 0;
        fds[n++] = {out[0], POLLIN, 0};
        if (in_open) fds[n++] = {in[1], POLLOUT, 0};
        if (poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 100))) < 0 && errno != EINTR) break;
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            char buf[65536];
            const ssize_t got = read(out[0], buf, sizeof buf);
            if (got > 0) o.out.append(buf, static_cast<size_t>(got));
            else if (got == 0 || errno != EAGAIN) out_open = false;
            if (o.out.size() > (64u << 20)) break;  // runaway output
        }
        if (in_open && n > 1 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            const ssize_t put = write(in[1], input.data() + written, input.size() - written);
            if (put > 0) written += static_cast<size_t>(put);
            if (put < 0 && errno != EAGAIN) written = input.size();
            if (written >= input.size()) close(in[1]), in_open = false;
        }
    }
    if (in_open) close(in[1]);
    close(out[0]);
    if (timed_out || out_open) kill(-pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (timed_out) o.why = "timed out after " + std::to_string(timeout_s) + " s";
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
          timeout_(cfg.get_float("timeout_s")),
          memory_mb_(cfg.get_int("memory_mb")) {}

    static void validate(const fthost::Config& cfg) {
        const auto cmd = cfg.get_string_list("command");
        if (cmd.empty() || cmd[0].empty()) cfg.fail("command", "must name a program");
        if (cfg.get_float("timeout_s") <= 0) cfg.fail("timeout_s", "must be > 0");
        if (cfg.get_int("memory_mb") < 16) cfg.fail("memory_mb", "must be at least 16");
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
        const Outcome o = run_program(argv_, env_, input.dump(-1, ' ', false, json::error_handler_t::replace), timeout_,
                                      memory_mb_);
        std::string why = o.why;
        std::vector<double> scores;
        if (o.ok) {
            try {
                json j = json::parse(o.out);
                if (j.is_object() && j.contains("scores")) j = j["scores"];
                if (!j.is_array() || j.size() != count) throw std::runtime_error("expected " + std::to_string(count) + " scores");
                for (const auto& s : j) {
                    if (s.is_null()) scores.push_back(std::nan(""));
                    else if (s.is_number()) scores.push_back(std::clamp(s.get<double>(), 0.0, 1.0));
                    else throw std::runtime_error("a score is neither a number nor null");
                }
            } catch (const std::exception& e) {
                why = std::string("unreadable output: ") + e.what();
                scores.clear();
            }
        }
        const bool failed = scores.empty() && count > 0;
        for (uint32_t i = 0; i < count; ++i) {
            results[i].score = failed ? 0.0 : scores[i];
            std::snprintf(results[i].reason, sizeof results[i].reason, "%s", failed ? ("program " + why).c_str() : "");
        }
        if (failed) {
            std::lock_guard<std::mutex> lock(mu_);
            ++failures_;
            host_.log(FT_LOG_WARN, "program",
                      "grader program " + why + " — its " + std::to_string(count) + " items score 0 (" +
                          std::to_string(failures_) + " failed batch" + (failures_ == 1 ? "" : "es") + " so far)");
        }
    }

    // Unused: grade_batch above handles every call.
    double grade(const ft_grade_item&, std::string&) const { return std::nan(""); }

private:
    fthost::Host host_;
    std::vector<std::string> argv_, env_;
    double timeout_;
    int64_t memory_mb_;
    std::mutex mu_;
    int64_t failures_ = 0;
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
