#include "distributed/local_launcher.hpp"

#include <fthost/plugin.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace fthost::host {
namespace {

// The ranks' pids, for the signal handler (async-signal-safe: it only calls kill).
constexpr int kMaxRanks = 1024;
volatile pid_t g_ranks[kMaxRanks];
volatile int g_rank_count = 0;
volatile sig_atomic_t g_forwarded = 0;  // a SIGINT / SIGTERM was passed on: ranks exiting 130 / 143 did as asked

void forward_signal(int signo) {
    g_forwarded = 1;
    for (int i = 0; i < g_rank_count; ++i)
        if (g_ranks[i] > 0) ::kill(g_ranks[i], signo);
}

[[noreturn]] void exec_rank(int rank, int nproc, int port, const std::vector<std::string>& args) {
    ::setpgid(0, 0);                  // terminal signals reach the launcher only
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no rank outlives a launcher killed with -9
    ::setenv("RANK", std::to_string(rank).c_str(), 1);
    ::setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
    ::setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
    ::setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
    ::setenv("MASTER_ADDR", "127.0.0.1", 1);
    ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
    std::vector<char*> argv;
    std::string self = "fthost";
    argv.push_back(self.data());
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    std::fprintf(stderr, "fthost: rank %d: cannot start /proc/self/exe: %s\n", rank, std::strerror(errno));
    ::_exit(127);
}

std::string describe(int status) {
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        return "was killed by signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")";
    }
    return "stopped";
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

// A port the kernel says is free on the loopback interface. Another process could take
// it before rank 0 listens on it; the rendezvous then fails with a clear error, and the
// command can be run again.
int free_loopback_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int err = errno;
        ::close(fd);
        throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(err));
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

int launch_local_ranks(int nproc, const std::vector<std::string>& args, double grace_s) {
    if (nproc < 1 || nproc > kMaxRanks)
        throw Error("--nproc-per-node must be in [1, " + std::to_string(kMaxRanks) + "], not " + std::to_string(nproc),
                    FT_ERR_CONFIG);
    const int port = free_loopback_port();
    struct sigaction sa{};
    sa.sa_handler = &forward_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    std::cout.flush();
    std::cerr.flush();
    for (int r = 0; r < nproc; ++r) {
        const pid_t pid = ::fork();
        if (pid < 0) {
            forward_signal(SIGKILL);
            throw Error(std::string("cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
        }
        if (pid == 0) exec_rank(r, nproc, port, args);
        g_ranks[r] = pid;
        g_rank_count = r + 1;
    }
    using Clock = std::chrono::steady_clock;
    int running = nproc, first_failure = -1, result = 0;
    Clock::time_point failed_at;
    bool terminated = false, killed = false;
    while (running > 0) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            int rank = -1;
            for (int i = 0; i < nproc; ++i)
                if (g_ranks[i] == pid) rank = i;
            if (rank < 0) continue;
            g_ranks[rank] = 0;
            --running;
            const int code = exit_code(status);
            if (code != 0 && first_failure < 0) {
                first_failure = rank;
                result = code;
                failed_at = Clock::now();
                const bool asked = g_forwarded && (code == 128 + SIGINT || code == 128 + SIGTERM);
                if (!asked)
                    std::cerr << "fthost: rank " << rank << " (pid " << pid << ") " << describe(status)
                          << (running ? "; the other ranks stop" : "") << "\n";
            }
            continue;
        }
        if (pid < 0 && errno != EINTR) break;
        // A failed rank's peers stop on their own (their next collective fails); one that
        // hangs is stopped: SIGTERM after grace_s, SIGKILL after twice that.
        if (first_failure >= 0) {
            const double since = std::chrono::duration<double>(Clock::now() - failed_at).count();
            if (!terminated && since > grace_s) {
                std::cerr << "fthost: " << running << " rank(s) still running " << grace_s << " s after rank "
                          << first_failure << " failed: sending SIGTERM\n";
                forward_signal(SIGTERM);
                terminated = true;
            } else if (!killed && since > 2 * grace_s) {
                forward_signal(SIGKILL);
                killed = true;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return result;
}

}  // namespace fthost::host
