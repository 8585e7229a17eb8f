#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

// An output buffer over a file descriptor that keeps the first write's errno, so that a
// full disk reads "No space left on device" instead of a stream's bare failbit.
class FdBuffer : public std::streambuf {
public:
    explicit FdBuffer(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
    int error() const { return err_; }

protected:
    int sync() override { return drain() ? 0 : -1; }
    int_type overflow(int_type c) override {
        if (!drain()) return traits_type::eof();
        if (!traits_type::eq_int_type(c, traits_type::eof())) {
            *pptr() = traits_type::to_char_type(c);
            pbump(1);
        }
        return traits_type::not_eof(c);
    }
    // Tensors' bytes go straight to the file instead of through the buffer.
    std::streamsize xsputn(const char* s, std::streamsize n) override {
        if (n < static_cast<std::streamsize>(sizeof buf_)) return std::streambuf::xsputn(s, n);
        return drain() && write_all(s, static_cast<size_t>(n)) ? n : 0;
    }

private:
    bool write_all(const char* p, size_t n) {
        while (n > 0 && !err_) {
            const ssize_t w = ::write(fd_, p, n);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) err_ = w < 0 ? errno : EIO;
            else p += w, n -= static_cast<size_t>(w);
        }
        return !err_;
    }
    bool drain() {
        const size_t n = static_cast<size_t>(pptr() - pbase());
        setp(buf_, buf_ + sizeof buf_);
        return write_all(buf_, n);
    }

    int fd_, err_ = 0;
    char buf_[1 << 16];
};

// Opens `path` (flags), runs write over it, syncs and closes; the errno of the first
// failure, or 0. A throwing `write` closes the file and rethrows.
int write_through_fd(const fs::path& path, int flags, const std::function<void(std::ostream&)>& write) {
    const int fd = ::open(path.c_str(), flags | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) return errno;
    int err = 0;
    try {
        FdBuffer buf(fd);
        std::ostream out(&buf);
        write(out);
        out.flush();
        err = buf.error() ? buf.error() : out ? 0 : EIO;
    } catch (...) {
        ::close(fd);
        throw;
    }
    // Synced before the rename: after a power loss the file is the old or the new one,
    // never a new name over empty blocks.
    if (!err && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && !err) err = errno;
    return err;
}

}  // namespace

std::string write_error(const fs::path& path, int err) {
    std::string msg = "cannot write " + path.string() + ": " + std::strerror(err);
    if (err == ENOSPC || err == EDQUOT || err == EFBIG)
        msg += " (free space, or raise the limit, and continue the run with --resume: nothing half-written was kept)";
    return msg;
}

void write_file_atomically(const fs::path& path, const std::function<void(std::ostream&)>& write) {
    const fs::path tmp = path.parent_path() / (".tmp-" + path.filename().string() + "-" + std::to_string(::getpid()));
    std::error_code ec;
    int err = 0;
    try {
        err = write_through_fd(tmp, O_CREAT | O_TRUNC, write);
    } catch (...) {
        fs::remove(tmp, ec);
        throw;
    }
    if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
    if (err) {
        fs::remove(tmp, ec);
        throw Error(write_error(path, err));
    }
}

void write_text_atomically(const fs::path& path, const std::string& text) {
    write_file_atomically(path, [&](std::ostream& o) { o << text; });
}

void overwrite_text_in_place(const fs::path& path, const std::string& text) {
    const int err = write_through_fd(path, O_CREAT | O_TRUNC, [&](std::ostream& o) { o << text; });
    if (err) throw Error(write_error(path, err));
}

void write_directory_atomically(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
    const fs::path tmp = dir.parent_path() / (".tmp-" + dir.filename().string());
    const fs::path old = dir.parent_path() / (".old-" + dir.filename().string());
    fs::remove_all(tmp);
    try {
        fs::create_directories(tmp);
        fill(tmp);
        if (fs::exists(dir)) {
            fs::remove_all(old);
            fs::rename(dir, old);
            std::error_code moved;
            fs::rename(tmp, dir, moved);
            if (moved) {  // the old directory goes back where it was
                std::error_code ec;
                fs::rename(old, dir, ec);
                throw fs::filesystem_error("rename", tmp, dir, moved);
            }
            fs::remove_all(old);
        } else {
            fs::rename(tmp, dir);
        }
    } catch (const fs::filesystem_error& e) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw Error(write_error(e.path1().empty() ? dir : e.path1(), e.code().value()));
    } catch (...) {
        std::error_code ec;
        fs::remove_all(tmp, ec);
        throw;
    }
}

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot read " + path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace fthost::host
