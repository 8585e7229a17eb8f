// fuzz_plugin_desc — what the registry (registry/plugin_registry.*) checks of a plugin
// library's descriptors before it trusts them: struct sizes, ABI major, name, kind,
// LibTorch version, function-table size, the 1.6 model-table fields (inputs,
// label_alignment, lm_head / vocab_size, encode_row, decoder_start_id), the objective's
// data shape, the option table, duplicates. The descriptors come from a real plugin
// library (tests/fuzz/desc_plugin.c) loaded with PluginRegistry::load_file, so the checks
// run on the loading path fthost uses; the library's entry symbol returns what this
// target built from the input. Every accepted plugin's options then go through
// validate_section with an empty table (the defaults, TOML literals, are parsed), as a
// config section of that plugin would.
//
// The fuzzed plugin is an honest one in one respect only: each struct is allocated with
// exactly the size its struct_size claims (at least its first 4 bytes), so a read past
// struct_size is a heap-buffer-overflow; every pointer it hands over points at something
// real (a string, the option array of option_count entries, a function). Everything else
// is the input's.
#include "fuzz_support.hpp"

#include "config/section.hpp"

#include <dlfcn.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

using namespace fthost;

namespace {

// Reads the input front to back; past its end everything reads as 0.
struct Reader {
    const uint8_t* p;
    size_t n;
    uint8_t u8() { return n ? (--n, *p++) : 0; }
    uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
    uint32_t u32() { return static_cast<uint32_t>(u16() | (static_cast<uint32_t>(u16()) << 16)); }
    std::string str() {
        const size_t len = std::min<size_t>(u8() % 24, n);
        std::string s(reinterpret_cast<const char*>(p), len);
        p += len, n -= len;
        return s;
    }
};

void dummy_function() {}

struct Built {
    std::vector<std::unique_ptr<char[]>> blocks;  // every struct, exactly its claimed size
    std::vector<std::unique_ptr<std::string>> strings;
    std::vector<const ft_plugin_desc*> list;

    char* block(size_t claimed) {
        blocks.emplace_back(new char[std::max<size_t>(claimed, 4)]());
        return blocks.back().get();
    }
    const char* string(Reader& r, const char* const* choices, size_t n_choices) {
        const uint8_t c = r.u8();
        if (c % (n_choices + 2) == 0) return nullptr;
        if (c % (n_choices + 2) == 1) {
            strings.push_back(std::make_unique<std::string>(r.str()));
            return strings.back()->c_str();
        }
        return choices[c % (n_choices + 2) - 2];
    }
};

// A struct size around the real one: often exact, sometimes short or longer.
uint32_t size_near(Reader& r, size_t real) {
    const uint8_t c = r.u8();
    if (c < 128) return static_cast<uint32_t>(real);
    if (c < 192) return static_cast<uint32_t>(real + (c & 31));
    return static_cast<uint32_t>((real * (c & 63)) / 64);
}

template <class T>
void put(char* block, uint32_t claimed, size_t offset, T value) {
    if (offset + sizeof(T) <= claimed) std::memcpy(block + offset, &value, sizeof(T));
}

const void* vtable(Built& b, Reader& r, ft_kind kind) {
    if (r.u8() % 8 == 0) return nullptr;
    const size_t real = kind == FT_KIND_MODEL       ? sizeof(ft_model_vtable)
                        : kind == FT_KIND_PARAM     ? sizeof(ft_param_vtable)
                        : kind == FT_KIND_OBJECTIVE ? sizeof(ft_objective_vtable)
                                                    : sizeof(ft_grader_vtable);
    const uint32_t claimed = size_near(r, real);
    char* t = b.block(claimed);
    // Function slots: each pointer-sized word set or NULL by one bit of a mask.
    const uint32_t mask = r.u32();
    void (*fn)() = &dummy_function;
    for (size_t off = 8, i = 0; off + sizeof(void*) <= claimed; off += sizeof(void*), ++i)
        if (mask & (1u << (i % 32))) std::memcpy(t + off, &fn, sizeof fn);
    put<uint32_t>(t, claimed, 0, claimed);
    if (kind == FT_KIND_MODEL) {
        const uint8_t c = r.u8();
        put<uint32_t>(t, claimed, offsetof(ft_model_vtable, inputs), c < 200 ? c % 8 : r.u32());
        put<int32_t>(t, claimed, offsetof(ft_model_vtable, label_alignment), c < 200 ? (c >> 3) % 3 : int32_t(r.u32()));
    } else if (kind == FT_KIND_OBJECTIVE) {
        const uint8_t c = r.u8();
        put<int32_t>(t, claimed, offsetof(ft_objective_vtable, data_shape), c < 200 ? c % 5 : int32_t(r.u32()));
        put<uint32_t>(t, claimed, offsetof(ft_objective_vtable, needs), r.u8());
    }
    return t;
}

const ft_option* options(Built& b, Reader& r, uint32_t count) {
    if (count == 0 && r.u8() % 2) return nullptr;
    if (count > 0 && r.u8() % 16 == 0) return nullptr;
    auto* arr = reinterpret_cast<ft_option*>(b.block(sizeof(ft_option) * std::max<uint32_t>(count, 1)));
    static const char* names[] = {"rank", "alpha", "command", "name"};
    static const char* defaults[] = {"8", "0.1", "true", "\"x\"", "[]", "[\"a\", \"b\"]", "1e400", "\"\\u0000\"",
                                     "[1, 2]", "{}", "9223372036854775808", "nan", "-inf", "1979-05-27"};
    for (uint32_t k = 0; k < count; ++k) {
        ft_option& o = arr[k];
        o.struct_size = size_near(r, sizeof(ft_option));
        o.name = b.string(r, names, 4);
        const uint8_t t = r.u8();
        o.type = t < 240 ? t % 7 : static_cast<ft_option_type>(r.u32());
        o.required = r.u8() % 4 == 0;
        o.default_value = b.string(r, defaults, sizeof defaults / sizeof *defaults);
        o.help = r.u8() % 2 ? "help" : nullptr;
    }
    return arr;
}

const ft_plugin_desc* descriptor(Built& b, Reader& r) {
    if (r.u8() % 32 == 0) return nullptr;
    const uint32_t claimed = size_near(r, sizeof(ft_plugin_desc));
    char* block = b.block(claimed);
    ft_plugin_desc d{};
    d.struct_size = claimed;
    const uint8_t m = r.u8();
    d.abi_major = m < 224 ? FTHOST_ABI_MAJOR : r.u16();
    d.abi_minor = r.u8() < 224 ? FTHOST_ABI_MINOR : r.u16();
    const uint8_t k = r.u8();
    d.kind = k < 240 ? k % 5 : static_cast<ft_kind>(r.u32());
    d.flags = r.u8() % 4;
    static const char* names[] = {"fuzz", "fuzz2", "exact_match"};
    d.name = b.string(r, names, 3);
    static const char* versions[] = {"0.1.0"};
    d.version = b.string(r, versions, 1);
    d.description = b.string(r, versions, 1);
    static const char* torch[] = {FTHOST_TORCH_MAJOR_MINOR, FTHOST_TORCH_MAJOR_MINOR, "2.10", "1.0"};
    d.torch_version = b.string(r, torch, 4);
    const uint8_t oc = r.u8();
    d.option_count = oc < 240 ? oc % 5 : r.u32() % 64;
    d.options = options(b, r, std::min<uint32_t>(d.option_count, 64));
    d.vtable = vtable(b, r, d.kind);
    d.validate = nullptr;
    std::memcpy(block, &d, std::min<size_t>(claimed, sizeof d));
    if (claimed < 4) std::memcpy(block, &claimed, 4);
    return reinterpret_cast<const ft_plugin_desc*>(block);
}

using SetFn = void (*)(const ft_plugin_desc* const*, uint32_t);

SetFn set_descriptors() {
    static SetFn fn = [] {
        void* h = ::dlopen(FTHOST_FUZZ_DESC_PLUGIN, RTLD_NOW | RTLD_LOCAL);
        if (!h) fuzz::unexpected("dlopen", ::dlerror());
        return reinterpret_cast<SetFn>(::dlsym(h, "fthost_fuzz_set_descriptors"));
    }();
    return fn;
}

}  // namespace

// Loads what the target uses before fuzzing starts, so that libFuzzer counts the
// coverage of the plugin libraries it opens.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)set_descriptors();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Reader r{data, size};
    Built b;
    const uint8_t head = r.u8();
    const uint32_t count = head % 4;
    for (uint32_t i = 0; i < count; ++i) b.list.push_back(descriptor(b, r));
    const bool null_list = head >= 252;
    set_descriptors()(null_list ? nullptr : b.list.data(), count);

    host::PluginRegistry reg;
    reg.print_refusals = false;
    int added = 0;
    fuzz::expect_only_errors("load_file", [&] { added = reg.load_file(FTHOST_FUZZ_DESC_PLUGIN); });
    const auto all = reg.all();
    FTHOST_FUZZ_CHECK(static_cast<size_t>(added) == all.size());
    FTHOST_FUZZ_CHECK(all.size() <= count);
    if (count > 0 && !null_list) FTHOST_FUZZ_CHECK(all.size() + reg.refusals().size() == count);
    for (const auto* p : all) {
        const ft_plugin_desc* d = p->desc;
        FTHOST_FUZZ_CHECK(d->name && *d->name);
        FTHOST_FUZZ_CHECK(d->kind >= FT_KIND_MODEL && d->kind <= FT_KIND_GRADER);
        (void)host::kind_name(d->kind);
        if (d->kind == FT_KIND_MODEL) (void)host::model_traits(static_cast<const ft_model_vtable*>(d->vtable));
        if (d->kind == FT_KIND_OBJECTIVE) (void)host::objective_traits(static_cast<const ft_objective_vtable*>(d->vtable));
        // A config section of this plugin with nothing set: defaults filled, required keys missing.
        fuzz::expect_only_errors("validate_section", [&] {
            toml::table empty;
            host::Diagnostics diag;
            (void)host::validate_section(&empty, "<fuzz>", d->name, d->options, d->option_count, diag);
        });
    }
    set_descriptors()(nullptr, 0);
    return 0;
}
