// The program grader's sandbox (plugins/graders/program/sandbox.hpp): a wall clock that
// holds whatever the program does with its pipes, every descendant killed when the batch
// ends, no inherited descriptors, no way into fthost's /proc entries, no network, CPU and
// output limits — as root and, where the tests run as root, as an ordinary user too.
#include "eval/grading.hpp"
#include "io/atomic_file.hpp"
#include "test_support.hpp"

#include <arpa/inet.h>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <netinet/in.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fthost::test {
namespace {

struct Graded {
    std::vector<double> scores;  // empty when the call failed
    std::string error;           // the failed call's message
    double seconds = 0;
    bool failed() const { return !error.empty(); }
};

// Grades two items ("a" with reference "a", "b" without) with a program grader. The
// test scripts keep what they report (pids, files) in their own folder, granted
// writable unless `extra` configures the file system itself.
Graded run(const fs::path& program, const std::string& extra = "") {
    const std::string files = extra.find("filesystem") != std::string::npos || extra.find("write_paths") != std::string::npos
                                  ? ""
                                  : "write_paths = [\"" + program.parent_path().string() + "\"]\n";
    PluginSection ps = plugin(FT_KIND_GRADER, "program", "command = [\"" + program.string() + "\"]\n" + files + extra);
    const auto* vt = static_cast<const ft_grader_vtable*>(ps.loaded->desc->vtable);
    ft_grader* g = nullptr;
    ft_error err{};
    check(vt->create(host_api(), &ps.config, &g, &err), err);
    std::vector<ft_grade_item> in = {{sizeof(ft_grade_item), "p", "a", "a", "{\"id\": 1}"},
                                     {sizeof(ft_grade_item), "p", "b", nullptr, "{\"id\": 2}"}};
    std::vector<ft_grade_result> out(in.size(), ft_grade_result{sizeof(ft_grade_result), -1.0, {0}});
    const auto t0 = std::chrono::steady_clock::now();
    const ft_status s = vt->grade(g, in.data(), static_cast<uint32_t>(in.size()), out.data(), &err);
    Graded r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    vt->destroy(g);
    if (s != FT_OK) r.error = err.message[0] ? err.message : "failed without a message";
    else
        for (const auto& o : out) r.scores.push_back(o.score);
    return r;
}

fs::path script(const fs::path& dir, const std::string& name, const std::string& body, const std::string& shell = "/bin/sh") {
    const fs::path p = dir / name;
    write_file(p, "#!" + shell + "\n" + body);
    ::chmod(p.c_str(), 0755);
    return p;
}

const std::vector<double> kPass = {1, 1};

std::vector<pid_t> read_pids(const fs::path& file) {
    std::ifstream in(file);
    std::vector<pid_t> pids;
    for (long p; in >> p;) pids.push_back(static_cast<pid_t>(p));
    return pids;
}

bool alive(pid_t p) { return ::kill(p, 0) == 0 || errno != ESRCH; }

// Whether this machine lets a process enter a new network namespace at all.
bool netns_available() {
    const pid_t p = ::fork();
    if (p == 0) _exit(::unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 || ::unshare(CLONE_NEWNET) == 0 ? 0 : 1);
    int st = 0;
    ::waitpid(p, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// Defect 1: closing or redirecting stdout no longer escapes the wall clock.
TEST(ProgramGrader, TimeoutHoldsWhateverTheProgramDoesWithStdout) {
    auto dir = temp_dir("pg-timeout");
    for (const auto& [name, body] : std::vector<std::pair<std::string, std::string>>{
             {"redirect.sh", "exec >/dev/null\nsleep 8\n"},
             {"close.sh", "exec >&-\nsleep 8\n"},
             {"close_both.sh", "exec <&- >&- 2>&-\nsleep 8\n"}}) {
        const auto r = run(script(dir, name, body), "timeout_s = 0.5");
        EXPECT_LT(r.seconds, 4.0) << name;
        EXPECT_TRUE(r.failed()) << name;
        EXPECT_NE(r.error.find("timed out"), std::string::npos) << name << ": " << r.error;
    }
}

// The batch ends when the program exits, not when the last holder of its stdout does.
TEST(ProgramGrader, BatchEndsWhenTheProgramExits) {
    auto dir = temp_dir("pg-exit");
    const auto r = run(script(dir, "bg.sh", "cat > /dev/null\necho '[1, 1]'\nsleep 8 &\nexit 0\n"));
    EXPECT_EQ(r.scores, kPass) << r.error;
    EXPECT_LT(r.seconds, 4.0);
}

// Defect 2: setsid, double fork — every descendant is dead when grade returns.
TEST(ProgramGrader, EveryDescendantIsKilledWhenTheBatchEnds) {
    auto dir = temp_dir("pg-descendants");
    const auto pids = dir / "pids";
    const std::string spawn =
        "setsid sleep 300 </dev/null >/dev/null 2>&1 &\necho $! >> " + pids.string() +
        "\n(sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> " + pids.string() + ")\n" +
        "(setsid sh -c 'sleep 300 & echo $! >> " + pids.string() + "' </dev/null >/dev/null 2>&1 &)\nsleep 0.3\n";
    // A program that answers and exits, and one that hangs until the timeout.
    for (const auto& [name, body, extra] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"exits.sh", "cat > /dev/null\n" + spawn + "echo '[1, 1]'\n", ""},
             {"hangs.sh", spawn + "sleep 30\n", "timeout_s = 1.5"}}) {
        fs::remove(pids);
        const auto r = run(script(dir, name, body), extra);
        const auto spawned = read_pids(pids);
        EXPECT_EQ(spawned.size(), 3u) << name;
        for (pid_t p : spawned) {
            EXPECT_FALSE(alive(p)) << name << ": descendant " << p << " outlived the batch";
            ::kill(p, SIGKILL);
        }
        EXPECT_LT(r.seconds, 5.0) << name;
    }
}

// Defect 3: no descriptor of fthost's (metrics.jsonl, say) reaches the program.
TEST(ProgramGrader, InheritsNoDescriptors) {
    auto dir = temp_dir("pg-fds");
    const auto metrics = dir / "metrics.jsonl";
    write_file(metrics, "{\"step\": 1}\n");
    const int fd = ::open(metrics.c_str(), O_WRONLY | O_APPEND);  // no O_CLOEXEC, as a careless host might
    ASSERT_GE(fd, 3);
    const std::string n = std::to_string(fd);
    const auto r = run(script(dir, "fds.sh",
                              "cat > /dev/null\necho forged >&" + n + " 2>/dev/null\n[ -e /proc/$$/fd/" + n +
                                  " ] && echo '[0, 0]' || echo '[1, 1]'\n"));
    ::close(fd);
    EXPECT_EQ(r.scores, kPass) << "descriptor " << n << " was inherited";
    std::ifstream in(metrics);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "{\"step\": 1}\n");
}

// Defect 3: the program cannot read fthost's environment through /proc (setenv'd
// secrets are in memory, not in /proc/<pid>/environ, so the test checks that the file
// cannot be read at all), nor its supervisor's (a copy of fthost's memory); fthost is
// dumpable again after the batch.
TEST(ProgramGrader, CannotReadTheHostsEnvironment) {
    auto dir = temp_dir("pg-environ");
    ::setenv("FTHOST_TEST_SECRET", "hunter2", 1);
    const auto r = run(script(dir, "environ.sh",
                              "cat > /dev/null\nif cat /proc/$TARGET/environ >/dev/null 2>&1 || cat /proc/$PPID/environ "
                              ">/dev/null 2>&1 || [ -n \"$FTHOST_TEST_SECRET\" ]; then echo '[0, 0]'; else echo '[1, 1]'; fi\n"),
                       "env = [\"TARGET=" + std::to_string(::getpid()) + "\"]");
    ::unsetenv("FTHOST_TEST_SECRET");
    EXPECT_EQ(r.scores, kPass) << "the program read the host's environment";
    EXPECT_EQ(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1);
}

// Defect 3: no network, loopback included (a listener of the test's own on 127.0.0.1).
TEST(ProgramGrader, HasNoNetwork) {
    if (!netns_available()) GTEST_SKIP() << "this machine allows no network namespace (the grader warns so)";
    auto dir = temp_dir("pg-net");
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(s, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    const std::string port = std::to_string(ntohs(a.sin_port));
    const auto r = run(script(dir, "net.sh",
                              "cat > /dev/null\nif (exec 3<>/dev/tcp/127.0.0.1/" + port +
                                  ") 2>/dev/null; then echo '[0, 0]'; else echo '[1, 1]'; fi\n",
                              "/bin/bash"));
    ::close(s);
    EXPECT_EQ(r.scores, kPass) << "the program reached 127.0.0.1:" << port;
}

// The program's file system holds the system directories, its command, read_paths and
// write_paths, and a private /tmp: nothing else of the host (the run directory, say).
const char* kFileProbe =
    "cat > /dev/null\nr=\"\"\n"
    "cat \"$D/secret\" >/dev/null 2>&1 && r=\"$r read-secret\"\n"
    "echo x > \"$D/out/forged\" 2>/dev/null && r=\"$r wrote-outside\"\n"
    "cat \"$D/granted/ref.txt\" >/dev/null 2>&1 || r=\"$r no-read-grant\"\n"
    "echo ok > \"$D/rw/result\" 2>/dev/null || r=\"$r no-write-grant\"\n"
    "echo y > \"$D/granted/ref.txt\" 2>/dev/null && r=\"$r wrote-read-grant\"\n"
    "echo t > /tmp/fthost-sandbox-probe 2>/dev/null || r=\"$r no-tmp\"\n"
    "echo z > /etc/fthost-probe 2>/dev/null && r=\"$r wrote-etc\"\n"
    "[ -x /usr/bin/env ] || r=\"$r no-usr\"\n"
    "echo \"[$r ]\" > \"$D/rw/report\"\necho '[1, 1]'\n";

TEST(ProgramGrader, SeesOnlyTheFilesItIsGranted) {
    auto dir = temp_dir("pg-files");
    for (const char* sub : {"out", "granted", "rw"}) fs::create_directories(dir / sub);
    write_file(dir / "secret", "hunter2\n");
    write_file(dir / "granted/ref.txt", "reference\n");
    fs::remove("/tmp/fthost-sandbox-probe");
    const auto probe = script(dir / "rw", "probe.sh", kFileProbe);
    const std::string grants = "env = [\"D=" + dir.string() + "\"]\nread_paths = [\"" + (dir / "granted").string() +
                               "\"]\nwrite_paths = [\"" + (dir / "rw").string() + "\"]\n";
    const auto r = run(probe, grants);
    ASSERT_EQ(r.scores, kPass) << r.error;
    EXPECT_EQ(read_text(dir / "rw/report"), "[ ]\n") << "what the program could do that it should not";
    EXPECT_EQ(read_text(dir / "rw/result"), "ok\n");
    EXPECT_FALSE(fs::exists(dir / "out/forged"));
    EXPECT_FALSE(fs::exists("/tmp/fthost-sandbox-probe")) << "the program's /tmp is the host's";
    EXPECT_EQ(read_text(dir / "granted/ref.txt"), "reference\n");
    // filesystem = "shared": the host's files, as fthost's user sees them.
    const auto shared = run(probe, grants + "filesystem = \"shared\"\n");
    ASSERT_EQ(shared.scores, kPass) << shared.error;
    EXPECT_NE(read_text(dir / "rw/report").find("read-secret"), std::string::npos) << read_text(dir / "rw/report");
    fs::remove("/tmp/fthost-sandbox-probe");
    // A grant that does not exist fails the grader's creation, naming it.
    PluginSection missing = plugin(FT_KIND_GRADER, "program",
                                   "command = [\"" + probe.string() + "\"]\nread_paths = [\"" + (dir / "nope").string() + "\"]\n");
    const auto* vt = static_cast<const ft_grader_vtable*>(missing.loaded->desc->vtable);
    ft_grader* g = nullptr;
    ft_error err{};
    ASSERT_NE(vt->create(host_api(), &missing.config, &g, &err), FT_OK);
    EXPECT_NE(std::string(err.message).find("read_paths: '" + (dir / "nope").string() + "' does not exist"), std::string::npos)
        << err.message;
}

// CPU time and output size are limited, and each failure says which limit.
TEST(ProgramGrader, CpuAndOutputLimits) {
    auto dir = temp_dir("pg-limits");
    const auto spin = run(script(dir, "spin.sh", "while :; do :; done\n"), "cpu_s = 1\ntimeout_s = 20");
    EXPECT_TRUE(spin.failed());
    EXPECT_NE(spin.error.find("CPU-time limit"), std::string::npos) << spin.error;
    EXPECT_LT(spin.seconds, 10.0);
    const auto flood = run(script(dir, "flood.sh", "yes\n"), "max_output_mb = 1\ntimeout_s = 20");
    EXPECT_TRUE(flood.failed());
    EXPECT_NE(flood.error.find("printed more than 1048576 bytes"), std::string::npos) << flood.error;
    EXPECT_LT(flood.seconds, 10.0);
    // Under the cap, a large answer is read whole.
    const auto big = run(script(dir, "big.sh", "cat > /dev/null\nprintf '[1, 1'\nhead -c 300000 /dev/zero | tr '\\0' ' '\n"
                                               "echo ']'\n"),
                         "max_output_mb = 1");
    EXPECT_EQ(big.scores, kPass) << big.error;
}

// The same guarantees for an ordinary user: when the tests run as root, a forked child
// drops to nobody and grades there (its exit status counts the failed checks).
TEST(ProgramGrader, SandboxHoldsForAnOrdinaryUser) {
    if (::geteuid() != 0) GTEST_SKIP() << "already an ordinary user: the other tests cover it";
    auto dir = temp_dir("pg-nobody");
    ::chmod(dir.c_str(), 0777);
    const auto pids = dir / "pids";
    const auto descendants = script(dir, "desc.sh",
                                    "cat > /dev/null\n(setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >> " +
                                        pids.string() + ")\necho '[1, 1]'\n");
    const auto hang = script(dir, "hang.sh", "exec >&-\nsleep 8\n");
    const auto environ = script(dir, "environ.sh",
                                "cat > /dev/null\nif cat /proc/$TARGET/environ >/dev/null 2>&1; then echo '[0, 0]'; "
                                "else echo '[1, 1]'; fi\n");
    const int fd = ::open((dir / "leak").c_str(), O_WRONLY | O_CREAT, 0666);
    const auto fds = script(dir, "fds.sh",
                            "cat > /dev/null\n[ -e /proc/$$/fd/" + std::to_string(fd) + " ] && echo '[0, 0]' || echo '[1, 1]'\n");
    const bool net = netns_available();
    const auto probe = script(dir, "net.sh",
                              "cat > /dev/null\n[ \"$(grep -c : /proc/net/dev)\" = 1 ] && echo '[1, 1]' || echo '[0, 0]'\n");
    (void)run(descendants);  // loads the plugin before the fork
    const pid_t child = ::fork();
    if (child == 0) {
        int failures = 0;
        try {
            if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(100);
            ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);  // setuid cleared it
            ::setenv("FTHOST_TEST_SECRET", "hunter2", 1);
            ::unlink(pids.c_str());
            failures += run(descendants).scores != kPass;
            for (pid_t p : read_pids(pids)) failures += alive(p), ::kill(p, SIGKILL);
            const auto h = run(hang, "timeout_s = 0.5");
            failures += h.seconds > 4.0 || h.error.find("timed out") == std::string::npos;
            failures += run(environ, "env = [\"TARGET=" + std::to_string(::getpid()) + "\"]").scores != kPass;
            failures += run(fds).scores != kPass;
            // In a new network namespace /proc/net/dev lists the loopback alone.
            if (net) failures += run(probe).scores != kPass;
        } catch (...) {
            _exit(101);
        }
        _exit(failures);
    }
    ::close(fd);
    int st = 0;
    ASSERT_EQ(::waitpid(child, &st, 0), child);
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0) << "failed checks as nobody (100: could not drop to nobody, 101: threw)";
    for (pid_t p : read_pids(pids)) ::kill(p, SIGKILL);
}

}  // namespace
}  // namespace fthost::test
