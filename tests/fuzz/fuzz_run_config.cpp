// fuzz_run_config — run configs (config/run_config.*, section.*) as `fthost validate`
// reads them: load_run_config with --set overrides against the build's real plugins
// (their options and their validate callbacks), then check_inputs (each data file's
// first row, each init_from / teacher directory's JSON files and safetensors headers),
// and input_conflicts for each stage's model. Problems are the diagnostics' business;
// fthost::Error is accepted too (the command line prints it as an error).
//
// Input: the TOML file; after a line "#--set", each further line is one --set argument.
// Paths under /dev, /proc and /sys are left out of check_inputs (a FIFO or /dev/zero
// would block or never end; that is a user's choice, not a bug).
#include "fuzz_support.hpp"

#include "config/run_config.hpp"

using namespace fthost;

namespace {

bool special_path(const std::string& p) {
    for (const char* prefix : {"/dev", "/proc", "/sys", "/run"})
        if (p.rfind(prefix, 0) == 0) return true;
    return p.find("..") != std::string::npos || p.find("//") != std::string::npos;
}

}  // namespace

// Loads what the target uses before fuzzing starts, so that libFuzzer counts the
// coverage of the plugin libraries it opens.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)fuzz::registry();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string in(reinterpret_cast<const char*>(data), size);
    std::string toml_text = in;
    std::vector<std::string> sets;
    const std::string marker = "\n#--set\n";
    if (const size_t at = in.find(marker); at != std::string::npos) {
        toml_text = in.substr(0, at);
        size_t start = at + marker.size();
        while (start <= in.size() && sets.size() < 16) {
            size_t end = in.find('\n', start);
            if (end == std::string::npos) end = in.size();
            sets.push_back(in.substr(start, end - start));
            start = end + 1;
        }
    }
    const std::string file = fuzz::scratch_file("config.toml", toml_text);
    fuzz::expect_only_errors("load_run_config", [&] {
        host::Diagnostics diag;
        host::RunConfig rc = host::load_run_config(file, sets, fuzz::registry(), diag);
        if (!diag.ok()) return;
        bool special = false;
        for (const auto& sc : rc.stages)
            for (const auto* p : {&sc.data.train_file, &sc.data.eval_file, &sc.init_from, &sc.teacher, &sc.tokenizer})
                special |= special_path(*p) || (!p->empty() && p->front() == '/');
        if (!special) host::check_inputs(rc, diag);
        for (const auto& sc : rc.stages) {
            if (!sc.model.loaded) continue;
            const auto* vt = static_cast<const ft_model_vtable*>(sc.model.loaded->desc->vtable);
            const host::ModelTraits mt = host::model_traits(vt);
            const ft_data_shape shape =
                sc.objective.loaded ? host::objective_traits(static_cast<const ft_objective_vtable*>(
                                                                  sc.objective.loaded->desc->vtable))
                                          .data_shape
                                    : FT_DATA_SEQUENCES;
            (void)host::input_conflicts(sc.model.plugin, mt, vt->lm_head != nullptr, sc, shape);
        }
    });
    return 0;
}
