// Every objective that trains a decoder trains T5, through the run driver, on rows built
// from the CoEdIT data with its bundled tokenizer: sft on a tiny T5 built from
// [stage.model], then dpo, kto, orpo and simpo with LoRA adapters (PEFT's default T5
// targets), distillation of that T5 into a smaller T5 built with the same tokenizer, and
// GRPO against SARI with rollouts from the encoder-reusing generator. DPO and KTO start
// where their maths says a policy equal to its reference starts (log 2 and 0.5).
#include "integration/run_support.hpp"
#include "io/atomic_file.hpp"

#include <cmath>
#include <set>

namespace fthost::test {
namespace {

using nlohmann::json;

// The source sentence of a CoEdIT prompt ("Paraphrase this: <source>").
std::string source_of(const std::string& prompt) { return prompt.substr(prompt.find(": ") + 2); }

void write_rows(const fs::path& dir) {
    std::ifstream in(fs::path(source_dir()) / "data/coedit/train.jsonl");
    std::ofstream sft(dir / "sft.jsonl"), pairs(dir / "pairs.jsonl"), feedback(dir / "feedback.jsonl");
    int i = 0;
    for (std::string line; std::getline(in, line) && i < 400; ++i) {
        const json r = json::parse(line);
        sft << json{{"prompt", r["prompt"]}, {"completion", r["completion"]}, {"task", r["task"]}}.dump() << "\n";
        if (i >= 64) continue;
        // Preferred: the edit; rejected: the unedited source (what a model that ignores the
        // instruction writes).
        pairs << json{{"prompt", r["prompt"]}, {"chosen", r["completion"]}, {"rejected", source_of(r["prompt"])}}.dump()
              << "\n";
        const bool good = i % 2 == 0;
        feedback << json{{"prompt", r["prompt"]}, {"completion", good ? r["completion"] : json(source_of(r["prompt"]))},
                         {"label", good}}
                        .dump()
                 << "\n";
    }
}

std::string tiny_t5(int64_t d_model) {
    return "[stage.model]\nplugin = \"t5\"\nd_model = " + std::to_string(d_model) +
           "\nd_kv = 16\nnum_heads = 2\nd_ff = 64\nnum_layers = 1\nrelative_attention_num_buckets = 8\n"
           "relative_attention_max_distance = 32\n";
}

std::string stage(const std::string& name, const std::string& objective, const fs::path& data, const std::string& extra) {
    return "[[stage]]\nname = \"" + name + "\"\ninit_from = \"sft\"\n[stage.param]\nplugin = \"lora\"\nr = 4\n"
           "[stage.objective]\nplugin = \"" + objective + "\"\n[stage.data]\ntrain = \"" + data.string() +
           "\"\nmax_seq_len = 96\n[stage.train]\nsteps = 3\nbatch_size = 8\nlr = 1e-3\nlog_every = 1\n" + extra;
}

TEST(T5Objectives, EveryObjectiveTrainsAnEncoderDecoder) {
    const fs::path dir = temp_dir("t5_objectives");
    write_rows(dir);
    const std::string tok = std::string(source_dir()) + "/data/coedit/tokenizer";
    const fs::path out = dir / "run";
    std::string cfg = "[run]\noutput_dir = \"" + out.string() + "\"\nseed = 5\n";
    cfg += "[[stage]]\nname = \"sft\"\ntokenizer = \"" + tok + "\"\n" + tiny_t5(32) +
           "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n[stage.data]\ntrain = \"" +
           (dir / "sft.jsonl").string() + "\"\nmax_seq_len = 96\n[stage.train]\nsteps = 80\nbatch_size = 16\nlr = 3e-3\n";
    cfg += stage("dpo", "dpo", dir / "pairs.jsonl", "");
    cfg += stage("kto", "kto", dir / "feedback.jsonl", "");
    cfg += stage("orpo", "orpo", dir / "pairs.jsonl", "");
    cfg += stage("simpo", "simpo", dir / "pairs.jsonl", "");
    cfg += "[[stage]]\nname = \"distill\"\nteacher = \"sft\"\ntokenizer = \"" + tok + "\"\n" + tiny_t5(16) +
           "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"distill\"\n[stage.data]\ntrain = \"" +
           (dir / "sft.jsonl").string() + "\"\nmax_seq_len = 96\n[stage.train]\nsteps = 40\nbatch_size = 16\nlr = 3e-3\n"
           "log_every = 1\n";
    cfg += stage("grpo", "grpo", dir / "sft.jsonl",
                 "[stage.generation]\nnum_generations = 4\nmax_new_tokens = 16\n[stage.eval]\nmax_examples = 8\n"
                 "max_new_tokens = 16\n[[stage.grader]]\nplugin = \"text_similarity\"\nmetric = \"sari\"\n"
                 "instruction_delimiter = \": \"\n");
    write_file(dir / "c.toml", cfg);
    ASSERT_EQ(run(dir / "c.toml"), 0);
    const json summary = json::parse(read_text(out / "summary.json"));
    for (const auto& s : summary["stages"]) EXPECT_EQ(s["status"], "completed") << s["name"];
    for (const char* name : {"dpo", "kto", "orpo", "simpo", "distill", "grpo"}) {
        const auto lines = lines_of(out, name);
        ASSERT_FALSE(lines.empty()) << name;
        for (const auto& l : lines) EXPECT_TRUE(std::isfinite(l["loss"].get<double>())) << name << " " << l.dump();
    }
    // A fresh adapter is its reference: DPO's loss is log 2, KTO's 1 - sigmoid(0).
    EXPECT_NEAR(lines_of(out, "dpo")[0]["loss"].get<double>(), std::log(2.0), 1e-5);
    EXPECT_NEAR(lines_of(out, "kto")[0]["loss"].get<double>(), 0.5, 1e-5);
    // The student learns the teacher's distributions.
    const auto distill = lines_of(out, "distill");
    std::cout << "t5 distill loss " << distill.front()["loss"] << " -> " << distill.back()["loss"] << "\n";
    EXPECT_LT(distill.back()["loss"].get<double>(), 0.9 * distill.front()["loss"].get<double>());
    // Adapters over T5 are PEFT's sequence-to-sequence adapters on q and v.
    const json peft = json::parse(read_text(out / "stages/dpo/final/adapter_config.json"));
    EXPECT_EQ(peft["task_type"], "SEQ_2_SEQ_LM");
    EXPECT_EQ(peft["target_modules"].get<std::set<std::string>>(), (std::set<std::string>{"q", "v"}));
}

}  // namespace
}  // namespace fthost::test
