// Models whose inputs are not plain text, end to end through the public ABI (1.6): the
// test-only plugins in tests/plugins/toys train through the run driver that `fthost
// run` calls. An image-conditioned text model must answer from its image (the text
// prompt is the same for every row, so chance is 1/4); a transformer over transaction
// events must beat what no model ignoring the history can reach (the entropy of the next
// event code, the variance of the next amount), once through the host's label log-probs
// with labels the model aligned itself, once through an objective over its named
// outputs. Data comes from seeds chosen here, train and eval from different ones.
#include "data/dataset.hpp"
#include "generate/generator.hpp"
#include "io/atomic_file.hpp"
#include "run_support.hpp"
#include "model/stage_inputs.hpp"

#include <cmath>
#include <random>

namespace fthost::test {
namespace {

const PluginRegistry& toys_registry() {
    static PluginRegistry reg = [] {
        PluginRegistry r;
        r.print_refusals = false;
        r.load_directory(plugin_dir());
        r.load_directory(toy_plugin_dir());
        return r;
    }();
    return reg;
}

// A toy plugin's section with its defaults.
PluginSection toy_section(ft_kind kind, const std::string& name) {
    PluginSection ps;
    ps.plugin = name;
    ps.loaded = &toys_registry().require(kind, name);
    toml::table empty;
    Diagnostics diag;
    ps.config = validate_section(&empty, "<test>", name, ps.loaded->desc->options, ps.loaded->desc->option_count, diag);
    return ps;
}

int run_toys(const fs::path& cfg) {
    RunRequest req{cfg.string(), {}, "", {}};
    req.stage_options.quiet = true;
    return run_command(req, toys_registry());
}

// ---- images: one bright half (top, bottom, left or right) in noise; the caption names it.

const char* kHalves[] = {"top", "bottom", "left", "right"};

nlohmann::json image_row(int half, std::mt19937_64& rng) {
    std::uniform_real_distribution<double> noise(0.0, 0.35);
    nlohmann::json img = nlohmann::json::array();
    for (int y = 0; y < 8; ++y) {
        nlohmann::json row = nlohmann::json::array();
        for (int x = 0; x < 8; ++x) {
            const bool bright = (half == 0 && y < 4) || (half == 1 && y >= 4) || (half == 2 && x < 4) || (half == 3 && x >= 4);
            row.push_back(std::round(((bright ? 0.65 : 0.0) + noise(rng)) * 100) / 100);
        }
        img.push_back(row);
    }
    return {{"image", img}, {"prompt", "shape:"}, {"completion", std::string(" ") + kHalves[half]}};
}

void write_images(const fs::path& file, int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::ofstream out(file);
    for (int i = 0; i < n; ++i) out << image_row(i % 4, rng).dump() << "\n";
}

// ---- events: a Markov chain over 8 merchant codes (mostly code + 1), amounts by code.

constexpr int kCodes = 8;

void write_events(const fs::path& file, int n, uint64_t seed, std::vector<int>* next_codes = nullptr,
                  std::vector<double>* next_log_amounts = nullptr) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> code(0, kCodes - 1), length(12, 24);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::normal_distribution<double> jitter(0.0, 0.05);
    std::ofstream out(file);
    for (int i = 0; i < n; ++i) {
        nlohmann::json events = nlohmann::json::array();
        int c = code(rng);
        const int T = length(rng);
        for (int t = 0; t < T; ++t) {
            const double amount = std::round(std::exp(0.4 * c + jitter(rng)) * 100) / 100;
            events.push_back({{"mcc", c}, {"amount", amount}});
            if (t > 0 && next_codes) next_codes->push_back(c);
            if (t > 0 && next_log_amounts) next_log_amounts->push_back(std::log1p(amount));
            c = u(rng) < 0.9 ? (c + 1) % kCodes : code(rng);
        }
        out << nlohmann::json{{"events", events}}.dump() << "\n";
    }
}

double entropy_of(const std::vector<int>& codes) {
    std::vector<double> count(kCodes, 0.0);
    for (int c : codes) count[c] += 1;
    double h = 0;
    for (double k : count)
        if (k > 0) h -= k / codes.size() * std::log(k / codes.size());
    return h;
}

double variance_of(const std::vector<double>& v) {
    double mean = 0, sq = 0;
    for (double x : v) mean += x / v.size();
    for (double x : v) sq += (x - mean) * (x - mean) / v.size();
    return sq;
}

std::string run_header(const fs::path& out) {
    return "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 11\nthreads = 2\n";
}

// Generation from `model`: cached equals uncached (greedy), and sampling with prompts
// repeated (a GRPO group) prefills each distinct prompt once — `distinct` rows — with the
// tokens of prefilling every row. Returns the greedy generations.
std::vector<Generation> expect_cached_and_shared_generation(ModelSession& model, const TextCodec& codec,
                                                            const std::vector<std::vector<int64_t>>& prompts,
                                                            const std::vector<const std::vector<Field>*>& fields,
                                                            int64_t distinct) {
    const int64_t n = static_cast<int64_t>(prompts.size());
    SamplingOptions o;
    o.max_new_tokens = 8;
    const auto cached = generate(model, prompts, o, n, codec, nullptr, fields);
    o.use_cache = false;
    const auto plain = generate(model, prompts, o, n, codec, nullptr, fields);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(cached[i].tokens, plain[i].tokens) << "row " << i;
    o.use_cache = true;
    o.temperature = 1.5;
    o.seed = 9;
    GenerationStats shared, alone;
    const auto a = generate(model, prompts, o, n, codec, &shared, fields);
    o.share_prefill = false;
    const auto b = generate(model, prompts, o, n, codec, &alone, fields);
    EXPECT_EQ(shared.prefill_rows, distinct);
    EXPECT_EQ(alone.prefill_rows, n);
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(a[i].tokens, b[i].tokens) << "row " << i;
    return cached;
}

// Trains toy_captioner with its image as a prefix or through cross-attention, then checks
// what it learned and how it generates.
void train_and_check_captioner(const std::string& image_attention) {
    const fs::path dir = temp_dir("toy_captioner_" + image_attention);
    write_images(dir / "train.jsonl", 320, 101);
    write_images(dir / "eval.jsonl", 48, 202);
    const fs::path run = dir / "run";
    write_file(dir / "c.toml", run_header(run) +
                                   "[[stage]]\nname = \"caption\"\n[stage.model]\nplugin = \"toy_captioner\"\n"
                                   "image_attention = \"" + image_attention + "\"\n"
                                   "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n"
                                   "[stage.data]\ntrain = \"" + (dir / "train.jsonl").string() + "\"\neval = \"" +
                                   (dir / "eval.jsonl").string() + "\"\nmax_seq_len = 32\n"
                                   "[stage.train]\nsteps = 240\nbatch_size = 16\nlr = 3e-3\nwarmup_steps = 10\n"
                                   "[stage.eval]\nmax_new_tokens = 8\n[[stage.grader]]\nplugin = \"exact_match\"\n");
    ASSERT_EQ(run_toys(dir / "c.toml"), 0);
    const auto s = summary_of(run, "caption");
    std::cerr << "toy_captioner (" << image_attention << "): exact_match " << s["base_eval"]["exact_match"] << " -> "
              << s["eval"]["exact_match"] << ", eval loss " << s["eval"]["loss"] << "\n";
    // Every row's text is "shape:": a model blind to the image gets at most 1/4 right.
    EXPECT_GE(s["eval"]["exact_match"].get<double>(), 0.9);
    EXPECT_LE(s["base_eval"]["exact_match"].get<double>(), 0.25);

    // The saved stage loads back through the plugin; generation with and without the KV
    // cache (the image in the prefill only, or in every step) gives the same tokens, and
    // the answer follows the image, not the text.
    auto model = ModelSession::from_stage_dir(run / "stages/caption/final", toys_registry(), at::Device(at::kCPU));
    const StageInputs in = stage_inputs(*model, run / "stages/caption/final", "");
    ASSERT_TRUE(in.codec);
    std::mt19937_64 rng(303);
    std::vector<Example> rows;
    for (int half = 0; half < 4; ++half) rows.push_back(make_example(image_row(half, rng), in.reader, FT_LABELS_COMPLETION, 32));
    std::vector<std::vector<int64_t>> prompts;
    std::vector<const std::vector<Field>*> fields;
    for (const auto& ex : rows) prompts.push_back(ex.prompt_ids), fields.push_back(&ex.fields);
    ASSERT_EQ(rows[0].fields.size(), 1u);
    EXPECT_EQ(rows[0].fields[0].name, "pixel_values");
    EXPECT_TRUE(model->supports_kv_cache());
    // Greedy: the answer follows the image, not the text.
    const auto cached = expect_cached_and_shared_generation(*model, *in.codec, prompts, fields, 4);
    int right = 0;
    for (int half = 0; half < 4; ++half) right += cached[half].text == std::string(" ") + kHalves[half];
    EXPECT_GE(right, 3) << cached[0].text << "|" << cached[1].text << "|" << cached[2].text << "|" << cached[3].text;
    // Three samples per image, as a GRPO group draws them: the image is prefilled once per
    // prompt (its patches, or its cross-attention keys and values, repeated in the cache).
    std::vector<std::vector<int64_t>> group_prompts;
    std::vector<const std::vector<Field>*> group_fields;
    for (size_t i = 0; i < prompts.size(); ++i)
        for (int g = 0; g < 3; ++g) group_prompts.push_back(prompts[i]), group_fields.push_back(fields[i]);
    expect_cached_and_shared_generation(*model, *in.codec, group_prompts, group_fields, 4);
}

TEST(InputKinds, ImageConditionedModelAnswersFromItsImage) { train_and_check_captioner("prefix"); }

TEST(InputKinds, ImageThroughCrossAttentionIsCachedOncePerPrompt) { train_and_check_captioner("cross"); }

TEST(InputKinds, EventModelLearnsTheNextEventThroughLabelsAndNamedOutputs) {
    const fs::path dir = temp_dir("toy_events");
    std::vector<int> next_codes;
    std::vector<double> next_amounts;
    write_events(dir / "train.jsonl", 400, 404);
    write_events(dir / "eval.jsonl", 60, 505, &next_codes, &next_amounts);
    const double h = entropy_of(next_codes), var = variance_of(next_amounts);
    const fs::path run = dir / "run";
    const std::string data = "[stage.data]\ntrain = \"" + (dir / "train.jsonl").string() + "\"\neval = \"" +
                             (dir / "eval.jsonl").string() + "\"\nmax_seq_len = 32\n";
    const std::string train = "[stage.train]\nsteps = 200\nbatch_size = 16\nlr = 3e-3\nwarmup_steps = 10\n";
    write_file(dir / "c.toml", run_header(run) +
                                   // cpt: the host's label log-probs at the positions the model aligned (no shift).
                                   "[[stage]]\nname = \"codes\"\n[stage.model]\nplugin = \"toy_events\"\n"
                                   "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"cpt\"\n" + data + train +
                                   // The objective over named outputs, continuing from the first stage.
                                   "[[stage]]\nname = \"amounts\"\ninit_from = \"codes\"\n[stage.param]\nplugin = \"full\"\n"
                                   "[stage.objective]\nplugin = \"toy_next_event\"\n" + data + train +
                                   // LoRA on the event model's linear sites, exported in PEFT's layout.
                                   "[[stage]]\nname = \"adapter\"\ninit_from = \"codes\"\n[stage.param]\nplugin = \"lora\"\n"
                                   "r = 4\ntarget_modules = [\"all-linear\"]\n[stage.objective]\nplugin = \"cpt\"\n" + data +
                                   "[stage.train]\nsteps = 20\nbatch_size = 16\nlr = 1e-3\n");
    ASSERT_EQ(run_toys(dir / "c.toml"), 0);
    const auto codes = summary_of(run, "codes"), amounts = summary_of(run, "amounts");
    std::cerr << "toy_events: next-code entropy " << h << ", next log-amount variance " << var << "; cpt eval loss "
              << codes["eval"]["loss"] << "; toy_next_event type_nll " << amounts["eval"]["type_nll"] << " amount_mse "
              << amounts["eval"]["amount_mse"] << "\n";
    // Neither bound can be reached without reading the events before each target.
    EXPECT_LT(codes["eval"]["loss"].get<double>(), 0.6 * h);
    EXPECT_LT(amounts["eval"]["type_nll"].get<double>(), 0.6 * h);
    EXPECT_LT(amounts["eval"]["amount_mse"].get<double>(), 0.6 * var);
    EXPECT_FALSE(fs::exists(run / "stages/codes/final/tokenizer.json"));  // no text, no tokenizer files
    // LoRA adapts the event model's own linear sites (its loss stays where the history is
    // used), and its PEFT config says it is no causal-LM adapter: the task type is none.
    const auto adapter = summary_of(run, "adapter");
    EXPECT_LT(adapter["eval"]["loss"].get<double>(), 0.6 * h);
    const auto peft = nlohmann::json::parse(read_text(run / "stages/adapter/final/adapter_config.json"));
    EXPECT_NE(peft["target_modules"].dump().find("fc1"), std::string::npos) << peft.dump();
    EXPECT_TRUE(peft["task_type"].is_null()) << peft.dump();
    EXPECT_EQ(peft["peft_type"], "LORA");
}

// ---- source -> target text: reverse a short word (the decoder must read the encoder).

std::string random_word(std::mt19937_64& rng) {
    std::uniform_int_distribution<int> letter(0, 5), length(3, 5);
    std::string w;
    for (int i = length(rng); i > 0; --i) w += static_cast<char>('a' + letter(rng));
    return w;
}

void write_reversals(const fs::path& file, int n, uint64_t seed, bool pairs = false) {
    std::mt19937_64 rng(seed);
    std::ofstream out(file);
    for (int i = 0; i < n; ++i) {
        const std::string w = random_word(rng);
        nlohmann::json row = {{"prompt", "reverse: " + w}};
        if (pairs) row["chosen"] = " " + std::string(w.rbegin(), w.rend()), row["rejected"] = " " + w;
        else row["completion"] = " " + std::string(w.rbegin(), w.rend());
        out << row.dump() << "\n";
    }
}

TEST(InputKinds, EncoderDecoderReadsItsSourceAndSharesTheEncoderAcrossSamples) {
    const fs::path dir = temp_dir("toy_seq2seq");
    write_reversals(dir / "train.jsonl", 600, 606);
    write_reversals(dir / "eval.jsonl", 60, 707);
    write_reversals(dir / "pairs.jsonl", 64, 808, true);
    const fs::path run = dir / "run";
    write_file(dir / "c.toml", run_header(run) +
                                   "[[stage]]\nname = \"sft\"\n[stage.model]\nplugin = \"toy_seq2seq\"\n"
                                   "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n"
                                   "[stage.data]\ntrain = \"" + (dir / "train.jsonl").string() + "\"\neval = \"" +
                                   (dir / "eval.jsonl").string() + "\"\nmax_seq_len = 32\n"
                                   "[stage.train]\nsteps = 1000\nbatch_size = 16\nlr = 3e-3\nwarmup_steps = 20\n"
                                   "[stage.eval]\nmax_new_tokens = 8\n[[stage.grader]]\nplugin = \"exact_match\"\n"
                                   // DPO on pairs that share their source: policy = reference at step 0.
                                   "[[stage]]\nname = \"dpo\"\ninit_from = \"sft\"\n[stage.param]\nplugin = \"lora\"\n"
                                   "r = 4\ntarget_modules = [\"all-linear\"]\n[stage.objective]\nplugin = \"dpo\"\n"
                                   "[stage.data]\ntrain = \"" + (dir / "pairs.jsonl").string() + "\"\nmax_seq_len = 32\n"
                                   "[stage.train]\nsteps = 2\nbatch_size = 8\nlog_every = 1\n");
    ASSERT_EQ(run_toys(dir / "c.toml"), 0);
    const auto s = summary_of(run, "sft");
    std::cerr << "toy_seq2seq: exact_match " << s["base_eval"]["exact_match"] << " -> " << s["eval"]["exact_match"] << "\n";
    // Every answer is its source reversed: nothing but reading the encoder gets it right.
    EXPECT_GE(s["eval"]["exact_match"].get<double>(), 0.8);
    EXPECT_LE(s["base_eval"]["exact_match"].get<double>(), 0.05);
    const auto dpo = lines_of(run, "dpo");
    ASSERT_FALSE(dpo.empty());
    EXPECT_NEAR(dpo[0]["loss"].get<double>(), std::log(2.0), 1e-5);

    // Generation: the source in the prefill only (the encoder runs once, its keys and
    // values cached) gives the tokens of recomputing everything each step; three samples
    // of each prompt share one encoder pass.
    auto model = ModelSession::from_stage_dir(run / "stages/sft/final", toys_registry(), at::Device(at::kCPU));
    const StageInputs in = stage_inputs(*model, run / "stages/sft/final", "");
    EXPECT_EQ(in.reader.decoder_start, 0);
    std::vector<Example> rows;
    for (const char* w : {"abc", "fedcb", "aabd", "cafe"})
        rows.push_back(make_example(nlohmann::json{{"prompt", std::string("reverse: ") + w}, {"completion", " x"}}, in.reader,
                                    FT_LABELS_COMPLETION, 32));
    EXPECT_EQ(rows[0].prompt_ids, (std::vector<int64_t>{0}));
    ASSERT_EQ(rows[0].fields.size(), 2u);
    EXPECT_EQ(rows[0].fields[0].name, "source_ids");
    std::vector<std::vector<int64_t>> prompts;
    std::vector<const std::vector<Field>*> fields;
    for (const auto& ex : rows)
        for (int g = 0; g < 3; ++g) prompts.push_back(ex.prompt_ids), fields.push_back(&ex.fields);
    const auto cached = expect_cached_and_shared_generation(*model, *in.codec, prompts, fields, 4);
    EXPECT_EQ(cached[0].text, " cba");
}

TEST(InputKinds, SettingsTheModelsInputsRuleOutAreRefusedWithTheirKey) {
    const fs::path dir = temp_dir("toy_refusals");
    write_events(dir / "train.jsonl", 4, 1);
    const std::string stage = "[[stage]]\nname = \"s\"\n[stage.model]\nplugin = \"toy_events\"\n[stage.param]\nplugin = \"full\"\n"
                              "[stage.objective]\nplugin = \"cpt\"\n[stage.data]\ntrain = \"" +
                              (dir / "train.jsonl").string() + "\"\n";
    auto errors = [&](const std::string& text) { return config_errors(dir, text, toys_registry()); };
    const std::string header = run_header(dir / "run"), train = "[stage.train]\nsteps = 1\n";
    const std::string packing = errors(header + stage + "packing = true\n" + train);
    EXPECT_NE(packing.find("c.toml:"), std::string::npos) << packing;
    EXPECT_NE(packing.find("never packed"), std::string::npos) << packing;
    const std::string graders = errors(header + stage + train + "[[stage.grader]]\nplugin = \"exact_match\"\n");
    EXPECT_NE(graders.find("reads no text"), std::string::npos) << graders;
    EXPECT_EQ(errors(header + stage + train), "");

    // A row the model's encode_row cannot use: file, line, and the model's reason.
    write_file(dir / "bad.jsonl", "{\"events\": [{\"mcc\": 1, \"amount\": 2}, {\"mcc\": 2, \"amount\": 1}]}\n"
                                  "{\"events\": [{\"mcc\": 99, \"amount\": 2}, {\"mcc\": 2, \"amount\": 1}]}\n");
    at::manual_seed(1);
    ModelSession model(toy_section(FT_KIND_MODEL, "toy_events"), toys_registry(), at::Device(at::kCPU));
    const StageInputs in = stage_inputs(model, "", "");
    EXPECT_FALSE(in.codec);
    std::string what;
    try {
        load_examples((dir / "bad.jsonl").string(), false, in.reader, FT_LABELS_ALL, 32);
    } catch (const std::exception& e) {
        what = e.what();
    }
    EXPECT_NE(what.find("bad.jsonl:2:"), std::string::npos) << what;
    EXPECT_NE(what.find("mcc 99 is outside 0..7"), std::string::npos) << what;
    // A row it can use: steps, ids and self-aligned labels from encode_row, fields beside them.
    const Example ex = make_example(nlohmann::json::parse("{\"events\": [{\"mcc\": 1, \"amount\": 2}, {\"mcc\": 2, \"amount\": 1}, "
                                                          "{\"mcc\": 3, \"amount\": 0}]}"),
                                    in.reader, FT_LABELS_ALL, 32);
    EXPECT_EQ(ex.ids, (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(ex.labels, (std::vector<int64_t>{2, 3, -100}));
    ASSERT_EQ(ex.fields.size(), 3u);
    EXPECT_EQ(ex.fields[0].name, "amount");
    // Rows of different lengths stack with each field's padding.
    const Example longer = make_example(nlohmann::json::parse("{\"events\": [{\"mcc\": 1, \"amount\": 2}, {\"mcc\": 2, \"amount\": 1}, "
                                                              "{\"mcc\": 3, \"amount\": 0}, {\"mcc\": 4, \"amount\": 5}]}"),
                                        in.reader, FT_LABELS_ALL, 32);
    const HostBatch b = collate({{&ex}, {&longer}});
    ASSERT_EQ(b.extras.size(), 3u);
    EXPECT_EQ(b.extras[0].second.sizes(), (at::IntArrayRef{2, 4}));
    EXPECT_EQ(b.labels[0][3].item<int64_t>(), -100);
    EXPECT_EQ(b.sequence_ids[0][3].item<int64_t>(), -1);
    EXPECT_NEAR(b.extras[0].second[1][3].item<double>(), std::log1p(5.0), 1e-6);
}

}  // namespace
}  // namespace fthost::test
