// Every config error path: each is reported with file:line:column, and all of a file's
// errors are reported together.
#include "io/utf8.hpp"
#include "test_support.hpp"

namespace fthost::test {
namespace {

const char* kValid = R"([run]
output_dir = "out"

[[stage]]
name = "one"
[stage.model]
plugin = "decoder"
hidden_size = 32
[stage.param]
plugin = "lora"
r = 4
[stage.objective]
plugin = "sft"
[stage.data]
train = "t.jsonl"
[stage.train]
steps = 3
[[stage.grader]]
plugin = "exact_match"

[[stage]]
name = "two"
init_from = "one"
[stage.param]
plugin = "full"
[stage.objective]
plugin = "cpt"
[stage.data]
train = "t.jsonl"
[stage.train]
epochs = 1
)";

std::vector<std::string> errors_of(const std::string& text, const std::vector<std::string>& sets = {}) {
    auto dir = temp_dir("config");
    write_file(dir / "c.toml", text);
    Diagnostics diag;
    load_run_config((dir / "c.toml").string(), sets, registry(), diag);
    return diag.errors;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    const auto pos = s.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return s.replace(pos, from.size(), to);
}

void expect_one_error(const std::vector<std::string>& errors, const std::string& where, const std::string& what) {
    ASSERT_EQ(errors.size(), 1u) << (errors.empty() ? "no error" : errors[0] + (errors.size() > 1 ? " | " + errors[1] : ""));
    EXPECT_NE(errors[0].find(where), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find(what), std::string::npos) << errors[0];
}

TEST(Config, ValidConfigLoadsWithDefaults) {
    auto dir = temp_dir("config");
    write_file(dir / "c.toml", kValid);
    Diagnostics diag;
    RunConfig rc = load_run_config((dir / "c.toml").string(), {}, registry(), diag);
    ASSERT_TRUE(diag.ok()) << diag.errors[0];
    ASSERT_EQ(rc.stages.size(), 2u);
    EXPECT_EQ(rc.seed, 42u);
    EXPECT_EQ(rc.stages[0].param.config.get_int("r"), 4);
    EXPECT_DOUBLE_EQ(rc.stages[0].param.config.get_float("lora_alpha"), 8.0);
    EXPECT_EQ(rc.stages[1].model.plugin, "decoder");  // continued from stage one
    EXPECT_EQ(rc.stages[0].graders.size(), 1u);
    EXPECT_EQ(rc.stages[1].train.epochs, 1);
}

TEST(Config, UnknownKeyNamesLineAndColumn) {
    expect_one_error(errors_of(replace(kValid, "r = 4", "r = 4\nrank = 8")), "c.toml:12:1", "unknown key 'rank'");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\nlearning_rate = 1")), "c.toml:18:1",
                     "unknown key 'learning_rate'");
    expect_one_error(errors_of(std::string(kValid) + "[extra]\nx = 1\n"), "c.toml", "unknown top-level key 'extra'");
    expect_one_error(errors_of(replace(kValid, "name = \"one\"", "name = \"one\"\ncolour = \"red\"")), "c.toml:6:1",
                     "unknown key 'colour'");
}

TEST(Config, WrongTypeNamesLineAndColumn) {
    expect_one_error(errors_of(replace(kValid, "r = 4", "r = \"four\"")), "c.toml:11:1", "must be an integer");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3.5")), "c.toml:17:1", "must be an integer");
    expect_one_error(errors_of(replace(kValid, "plugin = \"lora\"", "plugin = \"lora\"\ntarget_modules = \"q_proj\"")),
                     "c.toml:11:1", "must be an array of strings");
}

TEST(Config, MissingRequiredKeys) {
    expect_one_error(errors_of(replace(kValid, "output_dir = \"out\"", "")), "c.toml:1:1", "missing required key 'output_dir'");
    expect_one_error(errors_of(replace(kValid, "train = \"t.jsonl\"\n[stage.train]\nsteps = 3", "[stage.train]\nsteps = 3")),
                     "c.toml", "missing required key 'train'");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "")), "c.toml", "set steps or epochs");
    expect_one_error(errors_of(replace(kValid, "[stage.objective]\nplugin = \"sft\"", "")), "c.toml:4", "missing table");
}

TEST(Config, UnknownPluginsAndStageReferences) {
    expect_one_error(errors_of(replace(kValid, "plugin = \"lora\"", "plugin = \"loar\"")), "c.toml:10:10",
                     "no param plugin named 'loar' (loaded: dora, full, lora");
    expect_one_error(errors_of(replace(kValid, "init_from = \"one\"", "init_from = \"zero\"")), "c.toml",
                     "init_from 'zero' is not an earlier stage");
    expect_one_error(errors_of(replace(kValid, "name = \"two\"", "name = \"one\"")), "c.toml", "duplicate stage name 'one'");
    expect_one_error(errors_of(replace(kValid, "init_from = \"one\"", "init_from = \"one\"\n[stage.model]\nplugin = \"decoder\"")),
                     "c.toml", "remove [stage.model]");
}

TEST(Config, ValueRangesAreChecked) {
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\nlr = -1.0")), "c.toml:18:1", "lr must be positive");
    expect_one_error(errors_of(replace(kValid, "output_dir = \"out\"", "output_dir = \"out\"\ndevice = \"tpu\"")),
                     "c.toml:3:1", "device must be cpu, cuda or auto");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\nearly_stopping_patience = 2")), "c.toml:18:1",
                     "early stopping needs eval_every");
}

TEST(Config, EveryErrorIsReportedNotOnlyTheFirst) {
    std::string bad = replace(replace(replace(kValid, "r = 4", "r = \"x\""), "steps = 3", "steps = 3\nfoo = 1"),
                              "plugin = \"sft\"", "plugin = \"nope\"");
    EXPECT_EQ(errors_of(bad).size(), 3u);
}

TEST(Config, TomlSyntaxErrorNamesLineAndColumn) {
    auto errors = errors_of("[run]\noutput_dir = \"x\n");
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("c.toml:2:"), std::string::npos) << errors[0];
}

TEST(Config, SetOverridesValuesAndStagesByName) {
    auto dir = temp_dir("config");
    write_file(dir / "c.toml", kValid);
    Diagnostics diag;
    RunConfig rc = load_run_config((dir / "c.toml").string(),
                                   {"run.seed=7", "stage.one.param.r=16", "stage.two.train.lr=0.5", "run.name=renamed"},
                                   registry(), diag);
    ASSERT_TRUE(diag.ok()) << diag.errors[0];
    EXPECT_EQ(rc.seed, 7u);
    EXPECT_EQ(rc.name, "renamed");
    EXPECT_EQ(rc.stages[0].param.config.get_int("r"), 16);
    EXPECT_DOUBLE_EQ(rc.stages[1].train.lr, 0.5);
    EXPECT_NE(rc.resolved_toml.find("seed = 7"), std::string::npos);
    expect_one_error(errors_of(kValid, {"stage.three.train.lr=1"}), "--set", "no stage named 'three'");
    expect_one_error(errors_of(kValid, {"novalue"}), "--set novalue", "expected key.path=value");
    expect_one_error(errors_of(kValid, {"stage.one.param.r=big"}), "c.toml:11:1", "key 'r' in stage 'one' param must be an integer");
}

TEST(Config, MissingFileIsAnError) {
    Diagnostics diag;
    load_run_config("/nonexistent/c.toml", {}, registry(), diag);
    ASSERT_EQ(diag.errors.size(), 1u);
    EXPECT_NE(diag.errors[0].find("cannot read config file"), std::string::npos);
}

TEST(Config, PluginsValidateTheirValuesAtConfigTime) {
    expect_one_error(errors_of(replace(kValid, "r = 4", "r = 0")), "c.toml:11:1", "r: must be at least 1");
    expect_one_error(errors_of(replace(kValid, "hidden_size = 32", "hidden_size = 30")), "c.toml:6:1 (default)",
                     "num_attention_heads: must be positive and divide hidden_size");
    // Type errors and value errors of different sections are all reported together.
    EXPECT_EQ(errors_of(replace(replace(kValid, "r = 4", "r = 0"), "hidden_size = 32", "hidden_size = 30")).size(), 2u);
}

TEST(Config, PluginValidatesItsOwnValues) {
    auto model = tiny_model();
    try {
        model->apply_param(plugin(FT_KIND_PARAM, "lora", "r = 0"));
        FAIL() << "r = 0 accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("<test>:1:1: r: must be at least 1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(tiny_model()->apply_param(plugin(FT_KIND_PARAM, "lora", "target_modules = [\"nothing\"]")), Error);
}

TEST(Config, HostOptionsAreRangeChecked) {
    expect_one_error(errors_of(replace(kValid, "output_dir = \"out\"", "output_dir = \"out\"\nthreads = -3")), "c.toml:3:1",
                     "threads must be at least 0");
    expect_one_error(errors_of(replace(kValid, "output_dir = \"out\"", "output_dir = \"out\"\nseed = -1")), "c.toml:3:1",
                     "seed must be at least 0");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\ncheckpoint_every = -5")), "c.toml:18:1",
                     "checkpoint_every must be at least 0");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = -3\nepochs = 1")), "c.toml:17:1",
                     "steps must be at least 0");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\nadam_beta2 = 1.0")), "c.toml:18:1",
                     "adam_beta2 must be in [0, 1)");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\nwarmup_steps = -1")), "c.toml:18:1",
                     "warmup_steps must be at least 0");
    expect_one_error(errors_of(replace(kValid, "steps = 3", "steps = 3\n[stage.eval]\nbatch_size = 0")), "c.toml:19:1",
                     "batch_size must be at least 1");
}

// What validate opens beyond the config (check_inputs): data files and checkpoints.
std::vector<std::string> input_errors(const std::string& text) {
    auto dir = temp_dir("config_inputs_toml");
    write_file(dir / "c.toml", text);
    Diagnostics diag;
    const RunConfig rc = load_run_config((dir / "c.toml").string(), {}, registry(), diag);
    Diagnostics inputs;
    check_inputs(rc, inputs);
    return inputs.errors;
}

TEST(Config, ValidateOpensDataFiles) {
    const fs::path d = temp_dir("config_inputs");
    write_file(d / "good.jsonl", "\n{\"text\": \"a\"}\nnot json\n");
    write_file(d / "bad.jsonl", "\n{\"text\": \"a\"\n");
    write_file(d / "utf8.jsonl", "{\"text\": \"\xC3\x28\"}\n");
    write_file(d / "array.jsonl", "[1, 2]\n");
    const auto with = [&](const std::string& file) { return replace(kValid, "train = \"t.jsonl\"", "train = \"" + file + "\""); };
    const auto both = [&](const std::string& file) { return replace(with(file), "train = \"t.jsonl\"", "train = \"" + file + "\""); };
    // Blank lines are skipped and only the first row is read.
    EXPECT_TRUE(input_errors(both((d / "good.jsonl").string())).empty());
    // Stage two's t.jsonl is missing: named at its key.
    expect_one_error(input_errors(with((d / "good.jsonl").string())), "c.toml:29:1", "t.jsonl: no such file");
    expect_one_error(input_errors(both((d / "bad.jsonl").string())), "c.toml:15:1", "bad.jsonl:2: malformed JSON");
    expect_one_error(input_errors(both((d / "array.jsonl").string())), "c.toml:15:1", "array.jsonl:1: a line must be a JSON object");
    const auto utf8 = input_errors(both((d / "utf8.jsonl").string()));
    expect_one_error(utf8, "c.toml:15:1", "utf8.jsonl:1: malformed JSON");
    EXPECT_EQ(host::utf8_lossy(utf8.at(0)), utf8.at(0));
    expect_one_error(input_errors(both(d.string())), "c.toml:15:1", "is a directory");
    if (::geteuid() != 0) {  // root reads everything
        write_file(d / "locked.jsonl", "{\"text\": \"a\"}\n");
        fs::permissions(d / "locked.jsonl", fs::perms::none);
        expect_one_error(input_errors(both((d / "locked.jsonl").string())), "c.toml:15:1", "cannot open data file");
    }
}

TEST(Config, ValidateOpensCheckpoints) {
    const fs::path d = temp_dir("config_ckpt");
    const fs::path ck = d / "ckpt";
    fs::create_directories(ck);
    write_file(ck / "config.json", "{\"model_type\": \"llama\", \xFF");
    write_file(ck / "model.safetensors", std::string("\x10\0\0\0\0\0\0\0{\"a\": 1}        ", 24));
    write_file(d / "t.jsonl", "{\"text\": \"a\"}\n");
    const std::string text = "[run]\noutput_dir = \"out\"\n[[stage]]\nname = \"s\"\ninit_from = \"" + ck.string() +
                             "\"\n[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n[stage.data]\n"
                             "train = \"" + (d / "t.jsonl").string() + "\"\n[stage.train]\nsteps = 1\n";
    const auto errors = input_errors(text);
    ASSERT_EQ(errors.size(), 2u) << (errors.empty() ? "" : errors[0]);
    EXPECT_NE(errors[0].find("c.toml:5:1: init_from: " + (ck / "config.json").string() + ": not valid JSON"), std::string::npos)
        << errors[0];
    EXPECT_EQ(host::utf8_lossy(errors[0]), errors[0]);
    EXPECT_NE(errors[1].find("model.safetensors: malformed safetensors file: tensor 'a' needs dtype"), std::string::npos)
        << errors[1];
}

}  // namespace
}  // namespace fthost::test
