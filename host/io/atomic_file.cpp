#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>

#include <fstream>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace fthost::host {

void write_file_atomically(const fs::path& path, const std::function<void(std::ostream&)>& write) {
    const fs::path tmp = path.parent_path() / (".tmp-" + path.filename().string() + "-" + std::to_string(::getpid()));
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw Error("cannot write " + tmp.string());
        write(out);
        out.flush();
        if (!out) {
            out.close();
            fs::remove(tmp);
            throw Error("write failed for " + path.string() + " (disk full?)");
        }
    }
    fs::rename(tmp, path);
}

void write_text_atomically(const fs::path& path, const std::string& text) {
    write_file_atomically(path, [&](std::ostream& o) { o << text; });
}

void write_directory_atomically(const fs::path& dir, const std::function<void(const fs::path&)>& fill) {
    const fs::path tmp = dir.parent_path() / (".tmp-" + dir.filename().string());
    const fs::path old = dir.parent_path() / (".old-" + dir.filename().string());
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    try {
        fill(tmp);
    } catch (...) {
        fs::remove_all(tmp);
        throw;
    }
    if (fs::exists(dir)) {
        fs::remove_all(old);
        fs::rename(dir, old);
        fs::rename(tmp, dir);
        fs::remove_all(old);
    } else {
        fs::rename(tmp, dir);
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
