// file_sandbox.hpp — the grading program's view of the file system: a new mount
// namespace whose root is an empty tmpfs holding only what the program needs and the
// config grants, the way bubblewrap builds one:
//   read-only: /usr /bin /sbin /lib* /etc (as symlinks where the host has symlinks),
//              the command's own file and every argument naming an existing path,
//              `read_paths`;
//   writable:  `write_paths`, a private tmpfs at /tmp (`tmp_mb`), /dev/{null,zero,full,
//              random,urandom};
//   /proc:     the host's, bound (fthost's entries stay unreadable: it is non-dumpable).
// Everything else — the run directory, the user's home, the project's sources and data —
// does not exist for the program. The working directory keeps its path (created empty
// when not granted), so relative paths in `command` resolve as they do for fthost.
//
// plan_file_sandbox runs before fork (it allocates); enter_file_sandbox runs in the
// supervisor between fork and exec and makes only async-signal-safe system calls.
#pragma once

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sched.h>
#include <stdexcept>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace fthost_program {

struct FileBind {
    std::string src;   // "/oldroot" + the host path, resolved
    std::string dest;  // "/newroot" + the path the program sees
    bool dir = false, writable = false;
};

struct FilePlan {
    std::vector<FileBind> binds;                            // parents before children
    std::vector<std::pair<std::string, std::string>> links;  // (target, "/newroot" + path)
    std::string tmp_options;                                // tmpfs options of /tmp
    std::string cwd;                                        // the program's working directory
};

namespace detail {

inline std::filesystem::path absolute_normal(const std::string& p) {
    return std::filesystem::absolute(p).lexically_normal();
}

// Adds path (as the program will name it) bound from its resolved host path.
inline void add_bind(FilePlan& plan, const std::filesystem::path& path, bool writable) {
    std::error_code ec;
    const auto real = std::filesystem::canonical(path, ec);
    if (ec) throw std::runtime_error("cannot grant '" + path.string() + "' to the grader: " + ec.message());
    std::string dest = path.string();
    if (dest.size() > 1 && dest.back() == '/') dest.pop_back();
    // Inside a system directory already granted read-only (/bin/sh is /usr/bin/sh): there.
    const std::string src = "/oldroot" + real.string();
    if (!writable)
        for (const auto& b : plan.binds)
            if (!b.writable && b.dir && src.compare(0, b.src.size() + 1, b.src + "/") == 0) return;
    for (auto& b : plan.binds)
        if (b.dest == "/newroot" + dest) {  // granted twice: writable wins
            b.writable = b.writable || writable;
            return;
        }
    plan.binds.push_back({src, "/newroot" + dest, std::filesystem::is_directory(real), writable});
}

}  // namespace detail

// The plan for one program: argv (argv[0] and arguments naming existing paths are
// granted read-only), read_paths and write_paths (which must exist). Throws naming a path
// that cannot be granted.
inline FilePlan plan_file_sandbox(const std::vector<std::string>& argv, const std::vector<std::string>& read_paths,
                                  const std::vector<std::string>& write_paths, int64_t tmp_mb) {
    using detail::absolute_normal;
    namespace fs = std::filesystem;
    FilePlan plan;
    std::error_code ec;
    for (const char* sys : {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"}) {
        const fs::path p(sys);
        if (fs::is_symlink(p, ec)) plan.links.emplace_back(fs::read_symlink(p, ec).string(), std::string("/newroot") + sys);
        else if (fs::is_directory(p, ec)) detail::add_bind(plan, p, false);
    }
    for (size_t i = 0; i < argv.size(); ++i) {
        if (i == 0 && argv[0].find('/') == std::string::npos) continue;  // found in PATH, under /usr or /bin
        if (!argv[i].empty() && fs::exists(argv[i], ec)) detail::add_bind(plan, absolute_normal(argv[i]), false);
    }
    for (const auto& r : read_paths) {
        if (!fs::exists(r, ec)) throw std::runtime_error("read_paths: '" + r + "' does not exist");
        detail::add_bind(plan, absolute_normal(r), false);
    }
    for (const auto& w : write_paths) {
        if (!fs::exists(w, ec)) throw std::runtime_error("write_paths: '" + w + "' does not exist");
        detail::add_bind(plan, absolute_normal(w), true);
    }
    for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"})
        if (fs::exists(dev, ec)) plan.binds.push_back({std::string("/oldroot") + dev, std::string("/newroot") + dev, false, true});
    // Parents first, so that a grant inside another lands on top of it.
    std::stable_sort(plan.binds.begin(), plan.binds.end(),
                     [](const FileBind& a, const FileBind& b) { return a.dest.size() < b.dest.size(); });
    plan.tmp_options = "mode=1777,size=" + std::to_string(tmp_mb) + "m";
    plan.cwd = fs::current_path(ec).string();
    if (plan.cwd.empty()) plan.cwd = "/";
    return plan;
}

namespace detail {

// mkdir -p of path's directories, the last one too when `last` (async-signal-safe).
inline bool make_dirs(const char* path, bool last) {
    char buf[PATH_MAX];
    const size_t n = strlen(path);
    if (n >= sizeof buf) return false;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; ++i) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        if (buf[i] == '\0' && !last) break;
        const char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return false;
        buf[i] = c;
    }
    return true;
}

// The mount flags a remount must keep: a user namespace may not drop them.
inline unsigned long locked_flags(const char* path) {
    struct statfs s {};
    if (statfs(path, &s) != 0) return 0;
    unsigned long f = 0;
    if (s.f_flags & ST_NOSUID) f |= MS_NOSUID;
    if (s.f_flags & ST_NODEV) f |= MS_NODEV;
    if (s.f_flags & ST_NOEXEC) f |= MS_NOEXEC;
    if (s.f_flags & ST_NOATIME) f |= MS_NOATIME;
    if (s.f_flags & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (s.f_flags & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

inline bool remount_read_only(const char* path) {
    return mount(nullptr, path, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(path), nullptr) == 0;
}

// Whether mount point m (under /newroot) lies in a read-only grant: the innermost grant
// that contains it decides.
inline bool in_read_only_grant(const FilePlan& plan, const char* m, size_t len) {
    const FileBind* best = nullptr;
    for (const auto& b : plan.binds) {
        const size_t d = b.dest.size();
        if (d <= len && memcmp(m, b.dest.c_str(), d) == 0 && (m[d] == '/' || d == len) && (!best || d > best->dest.size()))
            best = &b;
    }
    return best && !best->writable;
}

// Every mount below a read-only grant read-only too: a recursive bind keeps the host's
// submounts (a container's /etc/hosts, say) writable otherwise. Reads mountinfo's fifth
// field (the mount point) line by line from a stack buffer.
inline bool remount_submounts_read_only(const FilePlan& plan) {
    const int fd = open("/oldroot/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[16384];
    size_t have = 0;
    bool ok = true;
    for (;;) {
        const ssize_t got = read(fd, buf + have, sizeof buf - have - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0 && have == 0) break;
        have += got > 0 ? static_cast<size_t>(got) : 0;
        char* nl = static_cast<char*>(memchr(buf, '\n', have));
        if (!nl) {
            if (got > 0 && have < sizeof buf - 1) continue;
            nl = buf + have;  // the last line, or one longer than the buffer
        }
        *nl = '\0';
        char* field = buf;  // the mount point is the fifth space-separated field
        for (int i = 0; i < 4 && field; ++i) field = strchr(field, ' '), field = field ? field + 1 : nullptr;
        char* end = field ? strchr(field, ' ') : nullptr;
        if (end) {
            *end = '\0';
            const size_t len = static_cast<size_t>(end - field);
            if (len > 8 && memcmp(field, "/newroot/", 9) == 0 && in_read_only_grant(plan, field, len) &&
                !strchr(field, '\\'))  // octal-escaped names (spaces) are left as bound
                ok = remount_read_only(field) && ok;
        }
        const size_t used = static_cast<size_t>(nl - buf) + (nl < buf + have ? 1 : 0);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (got <= 0 && have == 0) break;
    }
    close(fd);
    return ok;
}

inline int pivot_root(const char* new_root, const char* put_old) {
    return static_cast<int>(syscall(SYS_pivot_root, new_root, put_old));
}

}  // namespace detail

// What enter_file_sandbox returns: 0 on success, else the failed step (errno is set).
enum FileSandboxStep : int {
    kFsUnavailable = 1,  // no mount namespace here: the program sees the host's files
    kFsBaseTmpfs, kFsPivot, kFsBind, kFsReadOnly, kFsTmp, kFsProc, kFsFinalPivot, kFsWorkdir
};

inline const char* file_sandbox_step_name(int step) {
    switch (step) {
        case kFsBaseTmpfs: return "mounting the new root's tmpfs";
        case kFsPivot: return "pivot_root into the new root";
        case kFsBind: return "binding a granted path";
        case kFsReadOnly: return "making a grant read-only";
        case kFsTmp: return "mounting /tmp";
        case kFsProc: return "binding /proc";
        case kFsFinalPivot: return "pivot_root into the program's root";
        case kFsWorkdir: return "entering the working directory";
        default: return "creating a mount namespace";
    }
}

// Builds the plan's root and enters it (the calling process and its future children).
inline int enter_file_sandbox(const FilePlan& plan) {
    using namespace detail;
    if (unshare(CLONE_NEWNS) != 0) return kFsUnavailable;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return kFsUnavailable;
    // A tmpfs over /tmp is the scaffold: after pivot_root the host's / is at /oldroot (its
    // /tmp uncovered again), and the program's root is built at /newroot.
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) return kFsBaseTmpfs;
    if (chdir("/tmp") != 0 || mkdir("newroot", 0755) != 0 || mkdir("oldroot", 0755) != 0) return kFsBaseTmpfs;
    if (mount("newroot", "newroot", nullptr, MS_BIND | MS_REC, nullptr) != 0) return kFsBaseTmpfs;
    if (pivot_root(".", "oldroot") != 0 || chdir("/") != 0) return kFsPivot;
    if (!make_dirs("/newroot/tmp", true) ||
        mount("tmpfs", "/newroot/tmp", "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options.c_str()) != 0)
        return kFsTmp;
    // The host's /bin -> usr/bin style links first: binds below them go through them.
    for (const auto& [target, path] : plan.links)
        if (!make_dirs(path.c_str(), false) || (symlink(target.c_str(), path.c_str()) != 0 && errno != EEXIST)) return kFsBind;
    for (const auto& b : plan.binds) {
        const char* d = b.dest.c_str();
        if (!make_dirs(d, b.dir)) return kFsBind;
        if (!b.dir) {
            const int fd = open(d, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) close(fd);
        }
        if (mount(b.src.c_str(), d, nullptr, MS_BIND | MS_REC, nullptr) != 0) return kFsBind;
        if (!b.writable && !remount_read_only(d)) return kFsReadOnly;
    }
    if (!make_dirs("/newroot/proc", true) || mount("/oldroot/proc", "/newroot/proc", nullptr, MS_BIND | MS_REC, nullptr) != 0)
        return kFsProc;
    if (!remount_submounts_read_only(plan)) return kFsReadOnly;
    if (chdir("/newroot") != 0 || pivot_root(".", ".") != 0 || umount2(".", MNT_DETACH) != 0) return kFsFinalPivot;
    // The working directory's path, empty unless granted; "/" when it cannot be made
    // (inside a read-only grant). Then the root itself read-only: nothing to write there.
    if (chdir("/") != 0) return kFsWorkdir;
    make_dirs(plan.cwd.c_str(), true);
    if (chdir(plan.cwd.c_str()) != 0 && chdir("/") != 0) return kFsWorkdir;
    if (!remount_read_only("/")) return kFsReadOnly;
    return 0;
}

}  // namespace fthost_program
