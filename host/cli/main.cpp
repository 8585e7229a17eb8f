// fthost — the command line: run, validate, plugins, eval, generate, merge, verify,
// doctor, --version.
#include "distributed/local_launcher.hpp"
#include "export/verify_command.hpp"
#include "export/merge_command.hpp"
#include "generate/generate_command.hpp"
#include "registry/build_info.hpp"
#include "registry/plugin_registry.hpp"
#include "run/doctor_command.hpp"
#include "run/run_driver.hpp"
#include "train/stop_signal.hpp"

#include <fthost/plugin.hpp>

#include <boost/program_options.hpp>

#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <csignal>
#include <iostream>

namespace po = boost::program_options;
using namespace fthost::host;

namespace {

const char* kUsage =
    "usage: fthost <command> [options]\n"
    "\n"
    "commands:\n"
    "  run CONFIG [--set key=value]... [--resume RUN_DIR] [--nproc-per-node N]\n"
    "                                                       train every stage of a config (on N local ranks)\n"
    "  validate CONFIG [--set key=value]...                 check a config, reporting every error\n"
    "  plugins [--options]                                  list loaded plugins (name, kind, version, file)\n"
    "  eval CONFIG [--stage NAME] [--set key=value]...      score trained stages on their eval sets\n"
    "  generate STAGE_DIR (--input F.jsonl | --prompt TEXT) complete prompts with a trained stage\n"
    "  merge STAGE_DIR --out DIR                            fold a stage's adapter into its base weights\n"
    "  verify CHECKPOINT_DIR --reference FIXTURE.json       compare a checkpoint's logits with reference ones\n"
    "  doctor [--output-dir DIR]                            check what a run needs on this machine\n"
    "  --version                                            this build: version, commit, ABI, LibTorch, CUDA\n"
    "\n"
    "`fthost <command> --help` describes a command. Plugins load from the plugins folder\n"
    "next to the executable (the build's, or an install's lib/fthost/plugins) and from each\n"
    "folder in FTHOST_PLUGIN_PATH (':'-separated).\n";

PluginRegistry load_registry() {
    PluginRegistry reg;
    for (const auto& d : PluginRegistry::default_search_path()) reg.load_directory(d);
    return reg;
}

// Parses a subcommand's arguments; returns false after printing help or an error.
bool parse(const std::vector<std::string>& args, po::options_description& desc, po::positional_options_description& pos,
           po::variables_map& vm, const std::string& usage) {
    desc.add_options()("help,h", "show this help");
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    if (vm.count("help")) {
        std::cout << usage << "\n" << desc << "\n";
        return false;
    }
    po::notify(vm);
    return true;
}

int cmd_run(const std::vector<std::string>& args) {
    po::options_description desc("run options");
    std::string config, resume;
    int nproc = 1;
    std::vector<std::string> sets;
    desc.add_options()("config", po::value(&config)->required(), "config file (TOML)")(
        "set", po::value(&sets)->composing(), "override a key: run.seed=7, stage.<name>.train.lr=1e-3 (repeatable)")(
        "resume", po::value(&resume), "continue RUN_DIR from its last checkpoint")(
        "nproc-per-node", po::value(&nproc)->default_value(1),
        "start N data-parallel ranks on this machine (as torchrun --nproc-per-node N would)");
    po::positional_options_description pos;
    pos.add("config", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm,
               "usage: fthost run CONFIG [--set key=value]... [--resume RUN_DIR] [--nproc-per-node N]\n"
               "  under torchrun or srun, every rank runs `fthost run CONFIG ...` (docs/DISTRIBUTED.md)"))
        return 0;
    if (nproc != 1) {
        if (std::getenv("WORLD_SIZE") || std::getenv("RANK"))
            throw fthost::Error("--nproc-per-node starts ranks itself, but this process already is one (RANK / "
                                "WORLD_SIZE are set by torchrun or another launcher): drop --nproc-per-node",
                                FT_ERR_CONFIG);
        // The same command line for each rank, without --nproc-per-node.
        std::vector<std::string> rank_args = {"run"};
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i] == "--nproc-per-node") {
                ++i;
                continue;
            }
            if (args[i].rfind("--nproc-per-node=", 0) == 0) continue;
            rank_args.push_back(args[i]);
        }
        return launch_local_ranks(nproc, rank_args);
    }
    auto reg = load_registry();
    RunRequest req{config, sets, resume, {}};
    install_stop_signals();  // SIGINT/SIGTERM: finish the step, checkpoint, "interrupted"
    // A file-size limit (ulimit -f) makes write(2) fail with EFBIG, reported naming the
    // file like a full disk, instead of killing the process mid-checkpoint.
    std::signal(SIGXFSZ, SIG_IGN);
    return run_command(req, reg);
}

int cmd_validate(const std::vector<std::string>& args) {
    po::options_description desc("validate options");
    std::string config;
    std::vector<std::string> sets;
    desc.add_options()("config", po::value(&config)->required(), "config file (TOML)")(
        "set", po::value(&sets)->composing(), "override a key before validating (repeatable)");
    po::positional_options_description pos;
    pos.add("config", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost validate CONFIG [--set key=value]...")) return 0;
    auto reg = load_registry();
    if (!load_valid_config(config, sets, reg)) return 2;
    std::cout << config << ": ok\n";
    return 0;
}

int cmd_doctor(const std::vector<std::string>& args) {
    po::options_description desc("doctor options");
    DoctorRequest req;
    desc.add_options()("output-dir", po::value(&req.output_dir)->default_value("runs"),
                       "where runs will be written (its free disk is measured)");
    po::positional_options_description pos;
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost doctor [--output-dir DIR]")) return 0;
    PluginRegistry reg;
    reg.print_refusals = false;  // the report lists them
    for (const auto& d : PluginRegistry::default_search_path()) reg.load_directory(d);
    return doctor_command(req, reg);
}

int cmd_plugins(const std::vector<std::string>& args) {
    po::options_description desc("plugins options");
    desc.add_options()("options", "also list each plugin's config keys");
    po::positional_options_description pos;
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost plugins [--options]")) return 0;
    auto reg = load_registry();
    size_t w = 6;
    for (const auto* p : reg.all()) w = std::max(w, std::strlen(p->desc->name) + 2);
    const int width = static_cast<int>(w);
    std::cout << std::left << std::setw(width) << "NAME" << std::setw(11) << "KIND" << std::setw(10) << "VERSION" << "FILE\n";
    for (const auto* p : reg.all()) {
        std::cout << std::setw(width) << p->desc->name << std::setw(11) << kind_name(p->desc->kind) << std::setw(10)
                  << (p->desc->version ? p->desc->version : "") << p->file << "\n";
        if (vm.count("options"))
            for (uint32_t i = 0; i < p->desc->option_count; ++i) {
                const ft_option& o = p->desc->options[i];
                std::cout << "    " << std::setw(24) << o.name << " = " << std::setw(10)
                          << (o.required ? "(required)" : (o.default_value ? o.default_value : "")) << " " << (o.help ? o.help : "")
                          << "\n";
            }
    }
    return 0;
}

int cmd_eval(const std::vector<std::string>& args) {
    po::options_description desc("eval options");
    std::string config, stage;
    std::vector<std::string> sets;
    desc.add_options()("config", po::value(&config)->required(), "config file (TOML) of a finished run")(
        "stage", po::value(&stage), "only this stage")("set", po::value(&sets)->composing(), "override a key (repeatable)");
    po::positional_options_description pos;
    pos.add("config", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost eval CONFIG [--stage NAME] [--set key=value]...")) return 0;
    auto reg = load_registry();
    return eval_command(config, sets, stage, reg);
}

int cmd_generate(const std::vector<std::string>& args) {
    po::options_description desc("generate options");
    GenerateRequest req;
    std::vector<std::string> stops;
    desc.add_options()("stage_dir", po::value(&req.stage_dir)->required(), "a stage's final/ directory")(
        "input", po::value(&req.input), "JSONL of {\"prompt\": text or messages, ...}")(
        "prompt", po::value(&req.prompts)->composing(), "a prompt (repeatable; instead of --input)")(
        "output", po::value(&req.output), "output JSONL (default: stdout)")(
        "max-new-tokens", po::value(&req.sampling.max_new_tokens)->default_value(64), "tokens per completion at most")(
        "temperature", po::value(&req.sampling.temperature)->default_value(0.0), "0 = greedy")(
        "top-k", po::value(&req.sampling.top_k)->default_value(0), "sample from the k most likely tokens (0 = off)")(
        "top-p", po::value(&req.sampling.top_p)->default_value(1.0), "nucleus sampling mass (1 = off)")(
        "seed", po::value(&req.sampling.seed)->default_value(0), "sampling seed")(
        "stop", po::value(&stops)->composing(), "stop string (repeatable); EOS always stops")(
        "chat", "send each --prompt as a user message through the chat template")(
        "chat-template", po::value(&req.chat_template),
        "chatml, qwen3, llama3, mistral, gemma, gemma3, phi3 or plain (default: the checkpoint's tokenizer_config.json)")(
        "num-generations", po::value(&req.num_generations)->default_value(1), "completions per prompt")(
        "batch-size", po::value(&req.batch_size)->default_value(32), "prompts decoded together")(
        "device", po::value(&req.device)->default_value("cpu"), "cpu, cuda or auto")(
        "threads", po::value(&req.threads)->default_value(0), "CPU threads (0 = LibTorch's default)")(
        "no-cache", "recompute the prefix every step instead of using the KV cache")(
        "no-cuda-graphs", "on a GPU, launch every decode step's kernels instead of replaying a CUDA graph");
    po::positional_options_description pos;
    pos.add("stage_dir", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm,
               "usage: fthost generate STAGE_DIR (--input F.jsonl | --prompt TEXT...) [--output OUT.jsonl] [sampling options]"))
        return 0;
    req.sampling.stop_strings = stops;
    req.sampling.use_cache = !vm.count("no-cache");
    req.sampling.cuda_graphs = !vm.count("no-cuda-graphs");
    req.chat = vm.count("chat") > 0;
    auto reg = load_registry();
    return generate_command(req, reg);
}

int cmd_merge(const std::vector<std::string>& args) {
    po::options_description desc("merge options");
    MergeRequest req;
    desc.add_options()("stage_dir", po::value(&req.stage_dir)->required(), "a stage's final/ directory")(
        "out", po::value(&req.out)->required(), "directory to write the merged model to (replaced)")(
        "dtype", po::value(&req.dtype)->default_value("base"),
        "base (each tensor in the dtype the base stored it in: bf16 stays bf16) or fp32 (the float32 merge)")(
        "device", po::value(&req.device)->default_value("cpu"), "cpu, cuda or auto");
    po::positional_options_description pos;
    pos.add("stage_dir", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost merge RUN_DIR/stages/NAME/final --out DIR [--dtype base|fp32]"))
        return 0;
    auto reg = load_registry();
    return merge_command(req, reg);
}

int cmd_verify(const std::vector<std::string>& args) {
    po::options_description desc("verify options");
    VerifyRequest req;
    desc.add_options()("checkpoint", po::value(&req.checkpoint)->required(),
                       "a Hugging Face checkpoint directory or a stage's final/ directory")(
        "reference", po::value(&req.reference)->required(), "JSON with input_ids and the reference logits")(
        "tolerance", po::value(&req.tolerance)->default_value(1e-4), "largest absolute logit difference that passes")(
        "device", po::value(&req.device)->default_value("cpu"), "cpu, cuda or auto");
    po::positional_options_description pos;
    pos.add("checkpoint", 1);
    po::variables_map vm;
    if (!parse(args, desc, pos, vm, "usage: fthost verify CHECKPOINT_DIR --reference FIXTURE.json [--tolerance T]"))
        return 0;
    auto reg = load_registry();
    return verify_command(req, reg);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "help") {
        std::cout << kUsage;
        return argc < 2 ? 1 : 0;
    }
    const std::string cmd = argv[1];
    const std::vector<std::string> args(argv + 2, argv + argc);
    if (cmd == "--version" || cmd == "version") {
        std::cout << version_text();
        return 0;
    }
    try {
        if (cmd == "doctor") return cmd_doctor(args);
        if (cmd == "run") return cmd_run(args);
        if (cmd == "validate") return cmd_validate(args);
        if (cmd == "plugins") return cmd_plugins(args);
        if (cmd == "eval") return cmd_eval(args);
        if (cmd == "generate") return cmd_generate(args);
        if (cmd == "merge") return cmd_merge(args);
        if (cmd == "verify") return cmd_verify(args);
        std::cerr << "fthost: unknown command '" << cmd << "'\n\n" << kUsage;
        return 1;
    } catch (const po::error& e) {
        std::cerr << "fthost " << cmd << ": " << e.what() << " (see `fthost " << cmd << " --help`)\n";
        return 1;
    } catch (const std::exception& e) {
        // The ranks of a distributed run all report; each line says whose it is.
        const char* rank = std::getenv("RANK");
        std::cerr << "fthost " << cmd << (rank && std::string(rank) != "0" ? std::string(" (rank ") + rank + ")" : "")
                  << ": error: " << e.what() << "\n";
        return 1;
    }
}
