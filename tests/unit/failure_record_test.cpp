// Failures are recorded as what they are: an error quoting bytes that are not UTF-8 (a
// data row, a garbage stage.json) still reaches summary.json as valid JSON naming the
// file, and a run that stops on an error never leaves summary.json "running".
#include "io/run_dir.hpp"
#include "io/utf8.hpp"
#include "run/run_driver.hpp"
#include "test_support.hpp"

#include <fstream>
#include <sstream>

namespace fthost::test {
namespace {

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(FailureRecord, InvalidUtf8IsWrittenAsReplacementCharacters) {
    const fs::path d = temp_dir("utf8_rundir");
    RunDir dir(d);
    const std::string bad = "row \xC3\x28 and \xFF";
    ASSERT_NO_THROW(dir.write_json("summary.json", {{"error", bad}}));
    const auto back = nlohmann::json::parse(slurp(d / "summary.json"));
    EXPECT_EQ(back["error"], "row \xEF\xBF\xBD( and \xEF\xBF\xBD");
    ASSERT_NO_THROW(dir.append_metrics({{"stage", "s"}, {"note", bad}}));
    const std::string line = slurp(d / "metrics.jsonl");
    EXPECT_EQ(host::utf8_lossy(line), line);
    EXPECT_EQ(nlohmann::json::parse(line)["note"], "row \xEF\xBF\xBD( and \xEF\xBF\xBD");
}

// A stage whose data has a row of invalid UTF-8 (after a good first row, so validation
// passes): the run fails with the data file's line, and summary.json says "failed" with
// that error, in valid UTF-8.
TEST(FailureRecord, AFailedStageWithInvalidUtf8IsRecordedAsFailed) {
    const fs::path d = temp_dir("utf8_run");
    write_file(d / "train.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"bad \xC3\x28 byte\xFF\"}\n");
    write_file(d / "c.toml", "[run]\noutput_dir = \"" + (d / "run").string() + "\"\n[[stage]]\nname = \"s\"\n"
                             "[stage.model]\nplugin = \"decoder\"\nhidden_size = 32\nintermediate_size = 64\n"
                             "num_hidden_layers = 1\nnum_attention_heads = 4\nnum_key_value_heads = 2\n"
                             "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"cpt\"\n"
                             "[stage.data]\ntrain = \"" + (d / "train.jsonl").string() + "\"\n[stage.train]\nsteps = 1\n");
    RunRequest req{(d / "c.toml").string(), {}, "", {}};
    req.stage_options.quiet = true;
    std::string what;
    try {
        run_command(req, registry());
        FAIL() << "a malformed row was accepted";
    } catch (const std::exception& e) {
        what = e.what();
    }
    EXPECT_NE(what.find("train.jsonl:2:"), std::string::npos) << what;
    const std::string text = slurp(d / "run" / "summary.json");
    EXPECT_EQ(host::utf8_lossy(text), text);
    const auto summary = nlohmann::json::parse(text);
    EXPECT_EQ(summary["status"], "failed");
    ASSERT_EQ(summary["stages"].size(), 1u);
    EXPECT_EQ(summary["stages"][0]["status"], "failed");
    EXPECT_NE(summary["stages"][0]["error"].get<std::string>().find("train.jsonl:2:"), std::string::npos) << text;
}

}  // namespace
}  // namespace fthost::test
