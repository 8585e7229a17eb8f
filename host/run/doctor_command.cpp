#include "run/doctor_command.hpp"

#include "config/section.hpp"
#include "distributed/communicator.hpp"
#include "eval/grading.hpp"
#include "registry/build_info.hpp"

#include <fthost/plugin.hpp>

#include <ATen/Parallel.h>
#ifdef FTHOST_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

#include <sys/statvfs.h>

#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

class Report {
public:
    void ok(const std::string& what) { line("ok  ", what); }
    void warn(const std::string& what) { line("warn", what); }
    void fail(const std::string& what) {
        line("FAIL", what);
        ++failures_;
    }
    int failures() const { return failures_; }

private:
    // Flushed: a plugin's own warnings (stderr) then follow the check that caused them.
    static void line(const char* tag, const std::string& what) { std::cout << "  " << tag << "  " << what << std::endl; }
    int failures_ = 0;
};

std::string gib(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

void check_build(Report& r) {
    const BuildInfo& b = build_info();
    r.ok("fthost " + b.version + " (commit " + b.git_commit + "), plugin ABI " + b.abi + ", " + b.compiler);
    if (b.torch_loaded.empty()) r.warn("LibTorch " + b.torch_built + ": could not tell which library file was loaded");
    else r.ok("LibTorch " + b.torch_built + " loaded from " + b.torch_loaded);
    r.ok(std::to_string(at::get_num_threads()) + " CPU threads for LibTorch, " +
         std::to_string(std::thread::hardware_concurrency()) + " cores visible");
}

// The CUDA devices a run could use ([run] device = "cuda"), or why there are none.
int check_cuda(Report& r) {
    const BuildInfo& b = build_info();
    if (!b.cuda) {
        r.ok("CPU build: runs use the CPU (rebuild with a CUDA LibTorch and nvcc for GPUs)");
        return 0;
    }
#ifdef FTHOST_WITH_CUDA
    const int n = at::cuda::is_available() ? static_cast<int>(at::cuda::device_count()) : 0;
    if (n == 0) {
        r.warn("CUDA build (CUDA " + b.cuda_version + ") but no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES): "
               "runs use the CPU");
        return 0;
    }
    for (int i = 0; i < n; ++i) {
        const cudaDeviceProp* p = at::cuda::getDeviceProperties(i);
        size_t free = 0, total = 0;
        const int previous = at::cuda::current_device();
        at::cuda::set_device(i);
        const bool measured = cudaMemGetInfo(&free, &total) == cudaSuccess;
        at::cuda::set_device(previous);
        r.ok("cuda:" + std::to_string(i) + " " + p->name + ", compute " + std::to_string(p->major) + "." +
             std::to_string(p->minor) + ", " + gib(static_cast<double>(p->totalGlobalMem)) +
             (measured ? " (" + gib(static_cast<double>(free)) + " free)" : ""));
    }
    return n;
#else
    return 0;
#endif
}

void check_collectives(Report& r, int cuda_devices) {
    if (const std::string e = Communicator::self_test("gloo", at::Device(at::kCPU)); e.empty())
        r.ok("Gloo (CPU ranks): a one-process all-reduce works");
    else
        r.fail("Gloo: a one-process all-reduce failed: " + e);
    const BuildInfo& b = build_info();
    if (!b.cuda) return;
    const std::string nccl = b.nccl_version.empty() ? "NCCL" : "NCCL " + b.nccl_version;
    if (cuda_devices == 0) {
        r.warn(nccl + " is compiled in; not tested here (no CUDA device)");
        return;
    }
    if (const std::string e = Communicator::self_test("nccl", at::Device(at::kCUDA, 0)); e.empty())
        r.ok(nccl + " (GPU ranks): a one-process all-reduce on cuda:0 works");
    else
        r.fail(nccl + ": a one-process all-reduce on cuda:0 failed: " + e);
}

void check_plugins(Report& r, const PluginRegistry& reg) {
    std::map<std::string, int> by_kind;
    for (const LoadedPlugin* p : reg.all()) ++by_kind[kind_name(p->desc->kind)];
    std::string kinds, dirs;
    for (const auto& [kind, n] : by_kind) kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
    for (const auto& d : PluginRegistry::default_search_path()) dirs += (dirs.empty() ? "" : ":") + d.string();
    if (by_kind.empty()) r.fail("no plugins loaded from " + dirs + " (set FTHOST_PLUGIN_PATH to a plugin folder)");
    else r.ok(std::to_string(reg.all().size()) + " plugins (" + kinds + ") from " + dirs);
    for (const auto& w : reg.warnings()) r.warn(w);
    for (const auto& refusal : reg.refusals()) r.fail("refused plugin " + refusal);
}

// One real call of the program grader: its sandbox (namespaces, limits, the isolated
// filesystem) comes up here, and what it cannot enforce it says itself on stderr.
void check_sandbox(Report& r, const PluginRegistry& reg) {
    std::cout.flush();
    const LoadedPlugin* program = reg.find(FT_KIND_GRADER, "program");
    if (!program) {
        r.warn("the program grader is not loaded: graders that run programs are unavailable");
        return;
    }
    try {
        PluginSection grader;
        grader.plugin = "program";
        grader.loaded = program;
        grader.on_error = "fail";
        auto table = toml::parse("command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo '[1]'\"]\ntimeout_s = 10.0\n");
        Diagnostics diag;
        grader.config = validate_section(&table, "<doctor>", "program", program->desc->options,
                                         program->desc->option_count, diag);
        if (!diag.ok()) throw Error(diag.errors.front());
        const Grades g = grade_all({grader}, {{"prompt", "answer", "reference", "{}"}});
        if (g.scores.at(0).at(0) != 1.0) throw Error("the sandboxed program's score did not come back");
        r.ok("program grader: a sandboxed program ran and scored (what its sandbox cannot enforce here, it says itself)");
    } catch (const std::exception& e) {
        r.fail(std::string("program grader: a sandboxed program could not run: ") + e.what());
    }
}

void check_disk(Report& r, const std::string& output_dir) {
    std::error_code ec;
    fs::path dir = fs::absolute(output_dir, ec);
    while (!dir.empty() && !fs::exists(dir, ec) && dir != dir.root_path()) dir = dir.parent_path();
    struct statvfs s {};
    if (statvfs(dir.c_str(), &s) != 0) {
        r.warn("free disk: cannot measure " + dir.string());
        return;
    }
    const double free = static_cast<double>(s.f_bavail) * static_cast<double>(s.f_frsize);
    const std::string what = "output folder " + output_dir + " (on " + dir.string() + "): " + gib(free) + " free";
    if (free < 1024.0 * 1024.0 * 1024.0) r.warn(what + " — checkpoints of real models need far more");
    else r.ok(what);
}

}  // namespace

int doctor_command(const DoctorRequest& req, const PluginRegistry& registry) {
    std::cout << "fthost doctor\n";
    Report r;
    check_build(r);
    const int devices = check_cuda(r);
    check_collectives(r, devices);
    check_plugins(r, registry);
    check_sandbox(r, registry);
    check_disk(r, req.output_dir);
    std::cout << (r.failures() ? std::to_string(r.failures()) + " problem" + (r.failures() == 1 ? "" : "s") + " found\n"
                               : "everything a run needs is here\n");
    return r.failures() ? 1 : 0;
}

}  // namespace fthost::host
