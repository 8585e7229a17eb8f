#include "io/safetensors.hpp"

#include "io/atomic_file.hpp"
#include "io/utf8.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fthost::host {
namespace {

struct DType {
    const char* name;
    at::ScalarType type;
};
const DType kDTypes[] = {{"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16},
                         {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
                         {"U8", at::kByte},    {"BOOL", at::kBool}};

const char* dtype_name(at::ScalarType t) {
    for (const auto& d : kDTypes)
        if (d.type == t) return d.name;
    throw Error(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

}  // namespace

void save_safetensors(const std::string& path, const TensorList& tensors, const std::map<std::string, std::string>& metadata) {
    TensorList sorted = tensors;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::vector<at::Tensor> cpu;
    uint64_t offset = 0;
    for (size_t i = 0; i < sorted.size(); ++i) {
        const auto& [name, t] = sorted[i];
        if (i > 0 && name == sorted[i - 1].first) throw Error("safetensors: duplicate tensor name '" + name + "'");
        at::Tensor c = t.detach().to(at::kCPU).contiguous();
        const uint64_t bytes = c.numel() * c.element_size();
        header[name] = {{"dtype", dtype_name(c.scalar_type())}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
        cpu.push_back(c);
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the reference writer does
    write_file_atomically(path, [&](std::ostream& out) {
        const uint64_t n = h.size();
        unsigned char le[8];
        for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
        out.write(reinterpret_cast<const char*>(le), 8);
        out.write(h.data(), static_cast<std::streamsize>(h.size()));
        for (const auto& c : cpu) out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
    });
}

namespace {

// A read-only file, open for as long as its tensors are being mapped.
class File {
public:
    explicit File(const std::string& path) : path_(path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
        struct stat st {};
        if (::fstat(fd_, &st) != 0) {
            ::close(fd_);
            throw Error(path + ": cannot stat (" + std::strerror(errno) + ")");
        }
        size_ = static_cast<uint64_t>(st.st_size);
    }
    ~File() { ::close(fd_); }
    File(const File&) = delete;
    File& operator=(const File&) = delete;
    uint64_t size() const { return size_; }

    // `n` bytes from `offset` into `out`.
    void read(uint64_t offset, uint64_t n, char* out) const {
        while (n > 0) {
            const ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) throw Error(path_ + ": cannot read (" + (got < 0 ? std::strerror(errno) : "end of file") + ")");
            out += got, offset += static_cast<uint64_t>(got), n -= static_cast<uint64_t>(got);
        }
    }

    // The bytes [offset, offset + n) as a tensor. Each tensor gets its own copy-on-write
    // mapping of the pages it spans (writes go to private pages, never to the file), and
    // the mapping goes with the last reference to the tensor: a loader that replaces a
    // weight by another form (qlora's NF4) gives its pages back one tensor at a time.
    at::Tensor tensor(uint64_t offset, uint64_t n, at::IntArrayRef shape, at::ScalarType dtype) const {
        const auto opts = at::TensorOptions().dtype(dtype);
        if (n == 0 || offset % c10::elementSize(dtype) != 0) {  // nothing to map, or misaligned for its dtype: copy
            at::Tensor x = at::empty(shape, opts);
            // An empty tensor has no storage (a null data pointer, which read must not get).
            if (n > 0) read(offset, n, static_cast<char*>(x.data_ptr()));
            return x;
        }
        static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        const uint64_t start = offset - offset % page, length = offset + n - start;
        void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_, static_cast<off_t>(start));
        if (base == MAP_FAILED) throw Error(path_ + ": cannot map (" + std::strerror(errno) + ")");
        return at::from_blob(static_cast<char*>(base) + (offset - start), shape,
                             [base, length](void*) { ::munmap(base, length); }, opts);
    }

private:
    std::string path_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

}  // namespace

namespace {

struct Entry {
    std::string name;
    const DType* dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
};

// The tensors a header describes, every one checked against the data_size bytes after it.
std::vector<Entry> parse_header(const std::string& path, const char* text, uint64_t n, uint64_t data_size,
                                std::map<std::string, std::string>* metadata) {
    auto bad = [&](const std::string& why) { return Error(path + ": malformed safetensors file: " + why); };
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(text, text + n);
    } catch (const std::exception& e) {
        throw bad(std::string("header is not JSON (") + utf8_lossy(e.what()) + ")");
    }
    if (!header.is_object()) throw bad("header is not a JSON object");
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    std::vector<Entry> out;
    for (auto& [name, info] : header.items()) {
        if (name == "__metadata__") {
            if (metadata && info.is_object())
                for (auto& [k, v] : info.items())
                    (*metadata)[k] = v.is_string() ? v.get<std::string>()
                                                   : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            continue;
        }
        if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
            throw bad("tensor '" + name + "' needs dtype, shape and data_offsets");
        const std::string dt = info["dtype"].is_string() ? info["dtype"].get<std::string>() : "";
        const DType* d = nullptr;
        for (const auto& k : kDTypes)
            if (dt == k.name) d = &k;
        if (!d) throw bad("tensor '" + name + "' has unsupported dtype '" + dt + "'");
        if (!info["shape"].is_array()) throw bad("tensor '" + name + "' has a bad shape");
        const uint64_t elem = c10::elementSize(d->type);
        std::vector<int64_t> shape;
        // extent: the product of the dims with zeros read as ones, what LibTorch's strides
        // and byte count multiply up to (a [0, 2^62, 2^62] tensor has no bytes but
        // overflowing strides); bounded with the element size, so numel * elem cannot wrap.
        uint64_t numel = 1, extent = 1;
        for (const auto& s : info["shape"]) {
            if (!s.is_number_unsigned() || s.get<uint64_t>() > (1ull << 62)) throw bad("tensor '" + name + "' has a bad shape");
            const uint64_t dim = s.get<uint64_t>();
            if (extent > (1ull << 62) / elem / std::max<uint64_t>(dim, 1))
                throw bad("tensor '" + name + "' has a shape too large to address");
            shape.push_back(static_cast<int64_t>(dim));
            numel *= dim;
            extent *= std::max<uint64_t>(dim, 1);
        }
        const auto& off = info["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            throw bad("tensor '" + name + "' has bad data_offsets");
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        if (b > e || e > data_size) throw bad("tensor '" + name + "' data_offsets lie outside the file");
        if (e - b != numel * elem) throw bad("tensor '" + name + "' shape does not match its byte range");
        ranges.emplace_back(b, e);
        out.push_back({name, d, std::move(shape), b, e});
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second) throw bad("tensor byte ranges overlap");
    return out;
}

// The header's length from the first 8 bytes, checked against the file's size.
uint64_t header_length(const std::string& path, const unsigned char* first8, uint64_t file_size) {
    auto bad = [&](const std::string& why) { return Error(path + ": malformed safetensors file: " + why); };
    if (file_size < 8) throw bad("shorter than its 8-byte header length");
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(first8[i]) << (8 * i);
    if (n > file_size - 8 || n > (100ull << 20)) throw bad("header length " + std::to_string(n) + " exceeds the file");
    return n;
}

}  // namespace

std::map<std::string, at::Tensor> load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
    const File file(path);
    const uint64_t file_size = file.size();
    unsigned char first8[8] = {};
    file.read(0, std::min<uint64_t>(file_size, 8), reinterpret_cast<char*>(first8));
    const uint64_t n = header_length(path, first8, file_size);
    std::string header(n, '\0');
    file.read(8, n, header.data());
    std::map<std::string, at::Tensor> out;
    for (const Entry& t : parse_header(path, header.data(), n, file_size - 8 - n, metadata))
        out.emplace(t.name, file.tensor(8 + n + t.begin, t.end - t.begin, t.shape, t.dtype->type));
    return out;
}

size_t check_safetensors_header(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
    std::error_code ec;
    const uint64_t file_size = std::filesystem::file_size(path, ec);
    if (ec) throw Error(path + ": cannot stat (" + ec.message() + ")");
    unsigned char first8[8] = {};
    in.read(reinterpret_cast<char*>(first8), 8);
    const uint64_t n = header_length(path, first8, in ? file_size : std::min<uint64_t>(file_size, 7));
    std::string header(n, '\0');
    if (!in.read(header.data(), static_cast<std::streamsize>(n))) throw Error(path + ": cannot read its safetensors header");
    return parse_header(path, header.data(), n, file_size - 8 - n, nullptr).size();
}

}  // namespace fthost::host
