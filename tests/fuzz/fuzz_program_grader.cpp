// fuzz_program_grader — what the program grader (plugins/graders/program/program.cpp)
// makes of its program's stdout ({"scores": [...]} or a bare array, one number or null
// per item). The plugin is loaded through the registry like any other and driven through
// its C table; its program is `cat` of a file this target writes, so each input is
// exactly what the program printed. (The sandbox runs for every input: a few hundred
// executions a second at most.)
//
// Input: byte 0 % 5 is the number of items in the batch; the rest is the program's output.
// Invariants (docs/GRADERS.md): output that is not one score per item fails the batch —
// grade() returns an error with a NUL-terminated reason (the host's on_error then decides
// what the items get); otherwise it returns FT_OK with every score in [0, 1] or NaN and a
// NUL-terminated reason, and writes nothing past the batch.
#include "fuzz_support.hpp"

#include "config/host_api.hpp"
#include "config/section.hpp"

#include <cmath>
#include <cstring>

using namespace fthost;

namespace {

void quiet_log(ft_log_level, const char*, const char*) {}

struct Grader {
    const ft_grader_vtable* vt = nullptr;
    ft_grader* g = nullptr;
    host::Section config;
    std::string out_file;
};

Grader& grader() {
    static Grader gr = [] {
        Grader x;
        // The host's table with its logging silenced (every unreadable output is a warning).
        static ft_host_api api = *host::host_api();
        api.log = &quiet_log;
        const host::LoadedPlugin& p = fuzz::registry().require(FT_KIND_GRADER, "program");
        x.vt = static_cast<const ft_grader_vtable*>(p.desc->vtable);
        x.out_file = fuzz::scratch_file("stdout.txt", "");  // read_paths must exist when the grader is created
        // filesystem = "isolated" (the default) shows the program only what read_paths lists.
        const std::string toml_text = "command = [\"/bin/cat\", \"" + x.out_file + "\"]\ntimeout_s = 10.0\nread_paths = [\"" +
                                      x.out_file + "\"]\n";
        auto table = toml::parse(toml_text);
        host::Diagnostics diag;
        x.config = host::validate_section(&table, "<fuzz>", "program", p.desc->options, p.desc->option_count, diag);
        if (!diag.ok()) fuzz::unexpected("program config", diag.errors[0].c_str());
        ft_error err{};
        if (x.vt->create(&api, &x.config, &x.g, &err) != FT_OK) fuzz::unexpected("program create", err.message);
        return x;
    }();
    return gr;
}

}  // namespace

// Loads what the target uses before fuzzing starts, so that libFuzzer counts the
// coverage of the plugin libraries it opens.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)grader();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    Grader& gr = grader();
    const uint32_t count = data[0] % 5;
    fuzz::write_file(gr.out_file, std::string(reinterpret_cast<const char*>(data + 1), size - 1));
    static const char* completions[] = {"produce", "dairy", "{\"a\": 1}", "", "\xff\xfe"};
    std::vector<ft_grade_item> items;
    for (uint32_t i = 0; i < count; ++i)
        items.push_back({sizeof(ft_grade_item), "query: apples\ncategory:", completions[i], i % 2 ? nullptr : "produce",
                         "{\"query\": \"apples\", \"id\": 1}"});
    std::vector<ft_grade_result> results(count + 1);
    for (auto& r : results) {
        r.struct_size = sizeof(ft_grade_result);
        r.score = -1.0;
        std::memset(r.reason, 'x', sizeof r.reason);  // the grader must terminate what it writes
    }
    ft_error err{};
    std::memset(err.message, 'x', sizeof err.message);
    const ft_status s = gr.vt->grade(gr.g, items.data(), count, results.data(), &err);
    FTHOST_FUZZ_CHECK(results[count].score == -1.0);  // nothing past the batch is written
    if (s != FT_OK) {
        FTHOST_FUZZ_CHECK(std::memchr(err.message, '\0', sizeof err.message) != nullptr);
        FTHOST_FUZZ_CHECK(std::strncmp(err.message, "program ", 8) == 0);  // the reason, not an escaped exception
        return 0;
    }
    for (uint32_t i = 0; i < count; ++i) {
        const double v = results[i].score;
        FTHOST_FUZZ_CHECK(std::isnan(v) || (v >= 0.0 && v <= 1.0));
        FTHOST_FUZZ_CHECK(std::memchr(results[i].reason, '\0', sizeof results[i].reason) != nullptr);
    }
    return 0;
}
