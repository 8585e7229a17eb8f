// sandbox.hpp — runs one grading program in a sandbox, for the `program` grader.
//
// fthost forks a small supervisor S, which makes itself the child subreaper of the
// program's tree (prctl PR_SET_CHILD_SUBREAPER: every orphan of the tree, whatever
// setsid or double fork it did, is re-parented to S, never to init), tries to enter a new
// user + network namespace (no network; no capability over fthost, whose /proc entries
// are unreadable while fthost is non-dumpable during the batch), and forks the program G:
// own process group, stdin/stdout on pipes, stderr on /dev/null, every other descriptor
// closed, default signal handling, a clean environment, rlimits, exec. S reports G's pid
// and exit status on a status pipe, then kills (SIGKILL) and reaps every descendant it
// has — direct children first; each kill re-parents the victim's children to S, and S
// repeats until it has none — and exits. fthost keeps the wall clock: the batch ends when
// G exits (not when its stdout closes); at the deadline, or when the output passes its
// cap, fthost signals S (SIGUSR1), which kills G and then the rest as above.
//
// Between fork and exec only async-signal-safe calls are made (fthost is
// multi-threaded): no allocation, no stdio; everything G needs is prepared before fork.
#pragma once

#include "file_sandbox.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fthost_program {

struct Limits {
    double timeout_s = 30;        // wall clock, whole batch
    int64_t memory_mb = 2048;     // RLIMIT_AS
    int64_t cpu_s = 0;            // RLIMIT_CPU; 0 = ceil(timeout_s) + 1
    int64_t max_output_bytes = 64 << 20;
    int64_t max_processes = 256;  // RLIMIT_NPROC, applied only inside an own user namespace as non-root
};

// What the supervisor managed to set up for one batch.
enum Isolation : uint32_t {
    kNetworkIsolated = 1,  // a new network namespace: no interface but a down loopback
    kUserNamespace = 2,    // a new user namespace: no capability over fthost or its /proc
    kProcessLimit = 4,     // RLIMIT_NPROC applied
    kFilesIsolated = 8,    // a mount namespace with the FilePlan's root (file_sandbox.hpp)
};

struct Result {
    bool started = false;     // the supervisor forked the program
    bool timed_out = false;
    bool output_capped = false;
    int status = 0;           // the program's wait status (valid when exited)
    bool exited = false;
    uint32_t isolation = 0;
    std::string out;
    std::string error;        // the sandbox's own failure (pipe, fork, supervisor died)
};

namespace detail {

// The supervisor's state, for its SIGUSR1 handler (each supervisor is its own process).
inline volatile sig_atomic_t g_program_pid = 0;
inline volatile sig_atomic_t g_program_reaped = 0;

inline void on_kill_request(int) {
    const pid_t p = g_program_pid;
    if (p > 0 && !g_program_reaped) {
        kill(-p, SIGKILL);
        kill(p, SIGKILL);
    }
}

struct Msg {
    // 1 started {pid, isolation}, 2 exited {wait status}, 3 fork failed {errno},
    // 4 file sandbox failed {errno, FileSandboxStep}
    int32_t kind;
    int32_t a, b;
};

inline void send(int fd, Msg m) {
    const char* p = reinterpret_cast<const char*>(&m);
    size_t left = sizeof m;
    while (left > 0) {
        const ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        p += n, left -= static_cast<size_t>(n);
    }
}

// Decimal of a non-negative number into buf (async-signal-safe); returns its length.
inline size_t itoa(unsigned long v, char* buf) {
    char tmp[24];
    size_t n = 0;
    do tmp[n++] = static_cast<char>('0' + v % 10), v /= 10;
    while (v);
    for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    return n;
}

inline bool write_file(const char* path, const char* text, size_t len) {
    const int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = write(fd, text, len) == static_cast<ssize_t>(len);
    close(fd);
    return ok;
}

// "<id> <id> 1" into path.
inline bool write_map(const char* path, unsigned long id) {
    char buf[64];
    size_t n = itoa(id, buf);
    buf[n++] = ' ';
    n += itoa(id, buf + n);
    buf[n++] = ' ';
    buf[n++] = '1';
    return write_file(path, buf, n);
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[1];
};

inline bool all_digits(const char* s) {
    if (!*s) return false;
    for (; *s; ++s)
        if (*s < '0' || *s > '9') return false;
    return true;
}

inline long parse_long(const char* s, const char* end) {
    long v = 0;
    for (; s < end && *s >= '0' && *s <= '9'; ++s) v = v * 10 + (*s - '0');
    return v;
}

// Calls f(name, length) for each all-digit entry of the open directory `fd` (process ids
// under /proc, descriptors under /proc/self/fd), with getdents64: no allocation, so it is
// safe between fork and exec.
template <class F>
inline void for_each_numbered_entry(int fd, F&& f) {
    alignas(8) char dents[8192];
    for (;;) {
        const long got = syscall(SYS_getdents64, fd, dents, sizeof dents);
        if (got <= 0) return;
        for (long off = 0; off < got;) {
            const auto* d = reinterpret_cast<const linux_dirent64*>(dents + off);
            off += d->d_reclen;
            if (all_digits(d->d_name)) f(d->d_name, strnlen(d->d_name, 20));
        }
    }
}

// SIGKILLs every direct child of this process; returns how many it signalled.
// /proc/self/task/<pid>/children where the kernel has it, else a scan of /proc for PPid.
inline int kill_children() {
    const pid_t self = getpid();
    char path[64] = "/proc/self/task/";
    size_t n = 16;
    n += itoa(static_cast<unsigned long>(self), path + n);
    std::memcpy(path + n, "/children", 10);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int count = 0;
    if (fd >= 0) {
        char buf[4096];
        long pid = 0;
        bool in = false;
        for (;;) {
            const ssize_t got = read(fd, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) break;
            for (ssize_t i = 0; i < got; ++i) {
                if (buf[i] >= '0' && buf[i] <= '9') pid = pid * 10 + (buf[i] - '0'), in = true;
                else if (in) kill(static_cast<pid_t>(pid), SIGKILL), ++count, pid = 0, in = false;
            }
        }
        if (in) kill(static_cast<pid_t>(pid), SIGKILL), ++count;
        close(fd);
        return count;
    }
    fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 0;
    for_each_numbered_entry(fd, [&](const char* name, size_t len) {
        char stat_path[64] = "/proc/";
        std::memcpy(stat_path + 6, name, len);
        std::memcpy(stat_path + 6 + len, "/stat", 6);
        const int sfd = open(stat_path, O_RDONLY | O_CLOEXEC);
        if (sfd < 0) return;
        char st[512];
        const ssize_t sn = read(sfd, st, sizeof st - 1);
        close(sfd);
        if (sn <= 0) return;
        // "pid (comm) S ppid ...": the comm may hold ')' — take the last one.
        const char* close_paren = nullptr;
        for (ssize_t i = 0; i < sn; ++i)
            if (st[i] == ')') close_paren = st + i;
        if (!close_paren || close_paren + 4 >= st + sn) return;
        if (parse_long(close_paren + 4, st + sn) == self) kill(static_cast<pid_t>(parse_long(name, name + len)), SIGKILL), ++count;
    });
    close(fd);
    return count;
}

// Kills and reaps every descendant this (subreaper) process has, until none is left.
inline void kill_all_descendants() {
    for (;;) {
        kill_children();
        int st;
        const pid_t p = waitpid(-1, &st, 0);
        if (p < 0 && errno == ECHILD) return;
        if (p < 0 && errno != EINTR) return;
    }
}

inline void close_from(int lowest) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, static_cast<unsigned>(lowest), ~0U, 0U) == 0) return;
#endif
    const int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rlimit r{};
        const long top = getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY ? long(r.rlim_cur) : 65536;
        for (long i = lowest; i < std::min(top, 1L << 20); ++i) close(static_cast<int>(i));
        return;
    }
    for_each_numbered_entry(fd, [&](const char* name, size_t len) {
        const int n = static_cast<int>(parse_long(name, name + len));
        if (n >= lowest && n != fd) close(n);
    });
    close(fd);
}

inline void reset_signals() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);  // SIGKILL/SIGSTOP fail harmlessly
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

// A new user namespace (mapping only this uid and gid) with a new network namespace in
// it; else, for root, a network namespace alone. Returns the Isolation bits obtained.
inline uint32_t isolate() {
    const uid_t uid = geteuid();
    const gid_t gid = getegid();
    // Non-dumpable (inherited from fthost during the batch) makes /proc/self root-owned,
    // and a non-root process could not write its own uid_map: dumpable for this step
    // only, before the program exists.
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    uint32_t got = 0;
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
        got = kNetworkIsolated | kUserNamespace;
        write_file("/proc/self/setgroups", "deny", 4);
        write_map("/proc/self/gid_map", gid);
        write_map("/proc/self/uid_map", uid);
    } else if (unshare(CLONE_NEWNET) == 0) {
        got = kNetworkIsolated;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  // S is a copy of fthost's memory: keep it unreadable
    return got;
}

struct Prepared {
    std::vector<char*> argv, envp;
    const FilePlan* files = nullptr;  // the program's own root, or none (the host's files)
    bool search_path = false;
    rlim_t as = 0, cpu = 0, nproc = 0;
};

// The program, after fork: never returns.
[[noreturn]] inline void exec_program(const Prepared& p, int in_fd, int out_fd, int devnull, uint32_t isolation) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // dies with its supervisor
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0) _exit(126);
    dup2(devnull >= 0 ? devnull : out_fd, 2);
    for (int fd = 0; fd <= 2; ++fd) fcntl(fd, F_SETFD, 0);
    close_from(3);
    reset_signals();
    // CPU: SIGXCPU at the soft limit (a clear reason), SIGKILL a second later if ignored.
    rlimit as{p.as, p.as}, cpu{p.cpu, p.cpu + 1}, core{0, 0};
    setrlimit(RLIMIT_AS, &as);
    setrlimit(RLIMIT_CPU, &cpu);
    setrlimit(RLIMIT_CORE, &core);
    if ((isolation & kProcessLimit) && p.nproc > 0) {
        rlimit np{p.nproc, p.nproc};
        setrlimit(RLIMIT_NPROC, &np);
    }
    if (p.search_path) execvpe(p.argv[0], p.argv.data(), p.envp.data());
    else execve(p.argv[0], p.argv.data(), p.envp.data());
    _exit(127);
}

// The supervisor, after fork: never returns.
[[noreturn]] inline void supervise(const Prepared& p, pid_t parent, int in_fd, int out_fd, int status_fd) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(1);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    reset_signals();
    struct sigaction sa {};
    sa.sa_handler = &on_kill_request;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, nullptr);
    const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    uint32_t isolation = isolate();
    if ((isolation & kUserNamespace) && geteuid() != 0 && p.nproc > 0) isolation |= kProcessLimit;
    if (p.files) {
        const int step = enter_file_sandbox(*p.files);
        const int err = errno;
        if (step == 0) isolation |= kFilesIsolated;
        else if (step != kFsUnavailable) {  // half-built: never run the program in it
            send(status_fd, {4, err, step});
            _exit(1);
        }
    }
    const pid_t g = fork();
    if (g < 0) {
        send(status_fd, {3, errno, 0});
        _exit(1);
    }
    if (g == 0) exec_program(p, in_fd, out_fd, devnull, isolation);
    g_program_pid = g;
    setpgid(g, g);  // also here, so that kill(-g) holds before the program ran
    close(in_fd);
    close(out_fd);
    send(status_fd, {1, static_cast<int32_t>(g), static_cast<int32_t>(isolation)});
    int st = 0;
    for (;;) {
        const pid_t r = waitpid(-1, &st, 0);
        if (r == g) break;
        if (r < 0 && errno != EINTR) break;  // cannot happen: g is our child
    }
    g_program_reaped = 1;
    send(status_fd, {2, st, 0});
    kill(-g, SIGKILL);  // its group first (cheap), then every descendant left
    kill_all_descendants();
    _exit(0);
}

// fthost non-dumpable while any batch runs: /proc/<fthost>/environ, mem, fd, ... are then
// unreadable to the program, which runs in a user namespace with no capability over
// fthost (as root outside one, it could read them anyway). Restored after the last batch
// so that fthost's own /proc/self stays writable (clear_refs) between batches.
inline std::mutex g_dumpable_mu;
inline int g_batches = 0;
inline int g_was_dumpable = 1;

struct NonDumpable {
    NonDumpable() {
        std::lock_guard<std::mutex> lock(g_dumpable_mu);
        if (g_batches++ == 0) {
            g_was_dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
    }
    ~NonDumpable() {
        std::lock_guard<std::mutex> lock(g_dumpable_mu);
        if (--g_batches == 0 && g_was_dumpable > 0) prctl(PR_SET_DUMPABLE, g_was_dumpable, 0, 0, 0);
    }
    NonDumpable(const NonDumpable&) = delete;
    NonDumpable& operator=(const NonDumpable&) = delete;
};

}  // namespace detail

// Runs argv with `input` on stdin and an environment of exactly `env`; collects stdout
// until the program exits, the deadline passes or the output passes its cap.
// `files`: the program's file system (file_sandbox.hpp), or nullptr for the host's.
inline Result run_sandboxed(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                            const std::string& input, const Limits& lim, const FilePlan* files = nullptr) {
    using namespace detail;
    using clock = std::chrono::steady_clock;
    Result res;
    Prepared p;
    for (const auto& a : argv) p.argv.push_back(const_cast<char*>(a.c_str()));
    for (const auto& e : env) p.envp.push_back(const_cast<char*>(e.c_str()));
    p.argv.push_back(nullptr);
    p.envp.push_back(nullptr);
    p.search_path = argv[0].find('/') == std::string::npos;
    p.files = files;
    p.as = static_cast<rlim_t>(lim.memory_mb) * 1024 * 1024;
    p.cpu = static_cast<rlim_t>(lim.cpu_s > 0 ? lim.cpu_s : static_cast<int64_t>(std::ceil(lim.timeout_s)) + 1);
    p.nproc = static_cast<rlim_t>(std::max<int64_t>(lim.max_processes, 0));

    int in[2], out[2], status[2];
    if (pipe2(in, O_CLOEXEC) != 0) return res.error = std::string("pipe: ") + std::strerror(errno), res;
    if (pipe2(out, O_CLOEXEC) != 0) {
        res.error = std::string("pipe: ") + std::strerror(errno);
        close(in[0]), close(in[1]);
        return res;
    }
    if (pipe2(status, O_CLOEXEC) != 0) {
        res.error = std::string("pipe: ") + std::strerror(errno);
        for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
        return res;
    }
    signal(SIGPIPE, SIG_IGN);  // a program that exits without reading its input
    NonDumpable guard;
    const pid_t parent = getpid();
    const pid_t sup = fork();
    if (sup < 0) {
        res.error = std::string("fork: ") + std::strerror(errno);
        for (int fd : {in[0], in[1], out[0], out[1], status[0], status[1]}) close(fd);
        return res;
    }
    if (sup == 0) {
        close(in[1]), close(out[0]), close(status[0]);
        supervise(p, parent, in[0], out[1], status[1]);
    }
    close(in[0]), close(out[1]), close(status[1]);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(status[0], F_SETFL, O_NONBLOCK);

    const size_t cap = static_cast<size_t>(std::max<int64_t>(lim.max_output_bytes, 0));
    auto read_out = [&] {  // false at EOF or error; stops reading past the cap
        char buf[65536];
        for (;;) {
            const ssize_t got = read(out[0], buf, sizeof buf);
            if (got > 0) {
                res.out.append(buf, static_cast<size_t>(got));
                if (res.out.size() > cap) {
                    res.out.resize(cap);
                    res.output_capped = true;
                    return false;
                }
                continue;
            }
            if (got < 0 && errno == EINTR) continue;
            return got < 0 && errno == EAGAIN;
        }
    };
    std::string msgs;
    pid_t program = 0;
    bool in_open = !input.empty(), out_open = true, status_open = true, asked_kill = false;
    if (!in_open) close(in[1]);
    size_t written = 0;
    const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(lim.timeout_s));
    auto hard_deadline = clock::time_point::max();  // after asking S to kill: its grace
    auto ask_kill = [&] {
        if (asked_kill) return;
        asked_kill = true;
        kill(sup, SIGUSR1);  // S's handler is installed before it forks the program
        hard_deadline = clock::now() + std::chrono::seconds(5);
    };
    while (status_open && !res.exited) {
        const auto now = clock::now();
        if (now >= deadline && !res.timed_out && !res.output_capped) {
            res.timed_out = true;
            if (res.started) ask_kill();
            else hard_deadline = now + std::chrono::seconds(5);
        }
        if (now >= hard_deadline) break;
        const auto until = res.timed_out || res.output_capped ? hard_deadline : deadline;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
        pollfd fds[3];
        nfds_t n = 0;
        fds[n++] = {status[0], POLLIN, 0};
        const nfds_t out_i = out_open ? n++ : 3;
        if (out_open) fds[out_i] = {out[0], POLLIN, 0};
        const nfds_t in_i = in_open ? n++ : 3;
        if (in_open) fds[in_i] = {in[1], POLLOUT, 0};
        if (poll(fds, n, static_cast<int>(std::min<int64_t>(left, 1000))) < 0 && errno != EINTR) break;
        if (fds[0].revents) {
            char buf[256];
            ssize_t got;
            while ((got = read(status[0], buf, sizeof buf)) > 0) msgs.append(buf, static_cast<size_t>(got));
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) status_open = false;
            while (msgs.size() >= sizeof(Msg)) {
                Msg m;
                std::memcpy(&m, msgs.data(), sizeof m);
                msgs.erase(0, sizeof m);
                if (m.kind == 1) {
                    res.started = true;
                    program = m.a;
                    res.isolation = static_cast<uint32_t>(m.b);
                    if (res.timed_out) ask_kill();
                } else if (m.kind == 2) {
                    res.exited = true;
                    res.status = m.a;
                } else if (m.kind == 3) {
                    res.error = std::string("fork: ") + std::strerror(m.a);
                } else if (m.kind == 4) {
                    res.error = std::string("the file sandbox failed while ") + file_sandbox_step_name(m.b) + ": " +
                                std::strerror(m.a) + " (filesystem = \"shared\" runs the program without it)";
                }
            }
        }
        if (out_open && (fds[out_i].revents & (POLLIN | POLLHUP | POLLERR))) {
            out_open = read_out();
            if (res.output_capped) ask_kill();
        }
        if (in_open && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
            const ssize_t put = write(in[1], input.data() + written, input.size() - written);
            if (put > 0) written += static_cast<size_t>(put);
            if (put < 0 && errno != EAGAIN && errno != EINTR) written = input.size();  // EPIPE: it stopped reading
            if (written >= input.size()) close(in[1]), in_open = false;
        }
    }
    (void)program;
    // Everything the program wrote before it exited is in the pipe now.
    if (out_open && res.exited && !res.output_capped) read_out();
    if (in_open) close(in[1]);
    close(out[0]);
    // S now kills and reaps what is left of the tree, then exits (closing the status
    // pipe); bounded, in case something will not die.
    if (!res.exited) ask_kill();
    const auto grace = clock::now() + std::chrono::seconds(5);
    while (status_open) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(grace - clock::now()).count();
        if (left <= 0) break;
        pollfd f{status[0], POLLIN, 0};
        if (poll(&f, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
        char buf[256];
        const ssize_t got = read(status[0], buf, sizeof buf);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) status_open = false;
    }
    if (status_open) kill(sup, SIGKILL);
    close(status[0]);
    int st;
    while (waitpid(sup, &st, 0) < 0 && errno == EINTR) {
    }
    if (!res.started && res.error.empty()) res.error = "the sandbox's supervisor died before the program started";
    return res;
}

}  // namespace fthost_program
