// fuzz_safetensors — safetensors files (io/safetensors.*): the header check `fthost
// validate` does (check_safetensors_header) and the loader (load_safetensors), on the
// same bytes. Both must refuse a bad file with fthost::Error; what the loader returns must
// lie inside the file (every tensor's bytes are read back, so a range outside the mapping
// faults) and agree with the header check.
#include "fuzz_support.hpp"

#include "io/safetensors.hpp"

#include <cstring>

using namespace fthost;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_file("model.safetensors", std::string(reinterpret_cast<const char*>(data), size));
    size_t checked = 0;
    bool header_ok = false;
    fuzz::expect_only_errors("check_safetensors_header", [&] {
        checked = host::check_safetensors_header(path);
        header_ok = true;
    });
    bool load_ok = false;
    fuzz::expect_only_errors("load_safetensors", [&] {
        std::map<std::string, std::string> metadata;
        auto tensors = host::load_safetensors(path, &metadata);
        load_ok = true;
        FTHOST_FUZZ_CHECK(tensors.size() == checked);
        uint64_t total = 0;
        for (auto& [name, t] : tensors) {
            // numel is checked by division first: numel * element_size must not wrap.
            FTHOST_FUZZ_CHECK(static_cast<uint64_t>(t.numel()) <= size / t.element_size());
            const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
            total += bytes;
            std::string copy(bytes, '\0');
            if (bytes) std::memcpy(copy.data(), t.data_ptr(), bytes);
        }
        FTHOST_FUZZ_CHECK(total <= size);
    });
    // The check `fthost validate` does and the loader agree on what is a valid file.
    FTHOST_FUZZ_CHECK(header_ok == load_ok);
    return 0;
}
