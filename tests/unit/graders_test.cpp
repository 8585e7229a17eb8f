// The built-in graders through the C ABI: string_check, numeric, text_similarity (its sari
// against Hugging Face evaluate's, tests/fixtures/sari.json), json_match, and program (an external executable with a timeout, a clean environment,
// and crashes or garbage scoring 0 instead of failing the run).
#include "eval/grading.hpp"
#include "test_support.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <sys/stat.h>

namespace fthost::test {
namespace {

struct Graded {
    std::vector<double> scores;
    std::vector<std::string> reasons;
    std::string error;  // the grade call's error message; "" when it succeeded
};

// One item as the host hands it over: prompt, completion, reference (or none), row JSON.
struct Item {
    std::string prompt, completion;
    std::optional<std::string> reference;
    std::string row_json;
};

Graded grade_items(const std::string& name, const std::string& toml, const std::vector<Item>& items) {
    PluginSection ps = plugin(FT_KIND_GRADER, name, toml);
    const auto* vt = static_cast<const ft_grader_vtable*>(ps.loaded->desc->vtable);
    ft_grader* g = nullptr;
    ft_error err{};
    check(vt->create(host_api(), &ps.config, &g, &err), err);
    std::vector<ft_grade_item> in;
    for (const auto& it : items)
        in.push_back({sizeof(ft_grade_item), it.prompt.c_str(), it.completion.c_str(),
                      it.reference ? it.reference->c_str() : nullptr, it.row_json.c_str()});
    std::vector<ft_grade_result> out(in.size(), ft_grade_result{sizeof(ft_grade_result), -1.0, {0}});
    const ft_status s = vt->grade(g, in.data(), static_cast<uint32_t>(in.size()), out.data(), &err);
    vt->destroy(g);
    Graded r;
    if (s != FT_OK) {
        r.error = err.message;
        return r;
    }
    for (const auto& o : out) r.scores.push_back(o.score), r.reasons.push_back(o.reason);
    return r;
}

// Grades (completion, reference) pairs with a grader configured by `toml`.
Graded grade(const std::string& name, const std::string& toml,
             const std::vector<std::pair<std::string, std::optional<std::string>>>& items) {
    std::vector<Item> in;
    for (const auto& [c, r] : items) in.push_back({"prompt", c, r, "{\"id\": 1}"});
    return grade_items(name, toml, in);
}

std::string validation_error(const std::string& name, const std::string& toml) {
    const LoadedPlugin& p = registry().require(FT_KIND_GRADER, name);
    auto table = toml::parse(toml);
    Diagnostics diag;
    Section s = validate_section(&table, "<test>", name, p.desc->options, p.desc->option_count, diag);
    if (!diag.ok()) return diag.errors[0];
    ft_error err{};
    return p.desc->validate && p.desc->validate(host_api(), &s, &err) != FT_OK ? err.message : "";
}

TEST(Graders, StringCheckOperations) {
    EXPECT_EQ(grade("string_check", "", {{" meat ", " meat"}, {"meat", "Meat"}}).scores, (std::vector<double>{1, 0}));
    EXPECT_EQ(grade("string_check", "operation = \"ne\"", {{"a", "b"}}).scores[0], 1.0);
    EXPECT_EQ(grade("string_check", "operation = \"contains\"", {{"it is meat!", "meat"}, {"Meat", "meat"}}).scores,
              (std::vector<double>{1, 0}));
    EXPECT_EQ(grade("string_check", "operation = \"icontains\"", {{"MEAT aisle", "meat"}}).scores[0], 1.0);
    EXPECT_EQ(grade("string_check", "operation = \"regex\"\npattern = \"^[0-9]+$\"", {{"42", {}}, {"4x2", {}}}).scores,
              (std::vector<double>{1, 0}));
    EXPECT_EQ(grade("string_check", "value = \"yes\"", {{"yes", {}}}).scores[0], 1.0);
    EXPECT_TRUE(std::isnan(grade("string_check", "", {{"x", std::nullopt}}).scores[0]));
    EXPECT_NE(validation_error("string_check", "operation = \"like\"").find("eq, ne, contains"), std::string::npos);
    EXPECT_NE(validation_error("string_check", "operation = \"regex\"\npattern = \"(\"").find("not a valid regular"),
              std::string::npos);
}

TEST(Graders, NumericParsesTheAnswersNumber) {
    auto r = grade("numeric", "", {{"So the total is 1,234.", "1234"}, {"3 apples, then 7", "7"}, {"no idea", "5"},
                                   {"5", "n/a"}, {"-2.50", "-2.5"}});
    EXPECT_EQ(r.scores[0], 1.0);
    EXPECT_EQ(r.scores[1], 1.0);  // the last number counts
    EXPECT_EQ(r.scores[2], 0.0);
    EXPECT_EQ(r.reasons[2], "no number in the answer");
    EXPECT_TRUE(std::isnan(r.scores[3]));
    EXPECT_EQ(r.scores[4], 1.0);
    EXPECT_EQ(grade("numeric", "extract = \"first\"", {{"3 apples, then 7", "7"}}).scores[0], 0.0);
    EXPECT_EQ(grade("numeric", "rel_tol = 0.01", {{"101", "100"}, {"102", "100"}}).scores, (std::vector<double>{1, 0}));
}

TEST(Graders, TextSimilarityMetrics) {
    // f1: the -> dropped; [cat sat] vs [cat sat down]: P = 1, R = 2/3, F1 = 0.8.
    EXPECT_NEAR(grade("text_similarity", "", {{"The cat sat.", "cat sat down"}}).scores[0], 0.8, 1e-12);
    // ROUGE-L: LCS(a b c d, a c d e) = 3: P = R = 3/4.
    EXPECT_NEAR(grade("text_similarity", "metric = \"rouge_l\"", {{"a b c d", "a c d e"}}).scores[0], 0.75, 1e-12);
    EXPECT_NEAR(grade("text_similarity", "metric = \"bleu\"", {{"one two three four five", "one two three four five"}})
                    .scores[0],
                1.0, 1e-12);
    EXPECT_EQ(grade("text_similarity", "metric = \"bleu\"", {{"zzz", "one two"}}).scores[0], 0.0);
    EXPECT_EQ(grade("text_similarity", "pass_threshold = 0.7", {{"cat sat", "cat sat down"}, {"dog", "cat"}}).scores,
              (std::vector<double>{1, 0}));
    EXPECT_NE(validation_error("text_similarity", "metric = \"meteor\"").find("f1, bleu, rouge_l or sari"),
              std::string::npos);
    EXPECT_EQ(validation_error("text_similarity", "metric = \"sari\""), "");
    EXPECT_NE(validation_error("text_similarity", "source_field = \"src\"").find("read only by metric = \"sari\""),
              std::string::npos);
    EXPECT_NE(validation_error("text_similarity", "metric = \"rouge_l\"\ninstruction_delimiter = \": \"")
                  .find("read only by metric = \"sari\""),
              std::string::npos);
    EXPECT_NE(validation_error("text_similarity", "metric = \"sari\"\nsource_field = \"\"").find("must name a row field"),
              std::string::npos);
    EXPECT_NE(validation_error("text_similarity", "metric = \"sari\"\nreferences_field = \"\"").find("must name a row field"),
              std::string::npos);
}

// SARI equals what Hugging Face evaluate's sari gives (tests/fixtures/make_sari_fixtures.py;
// evaluate reports it in [0, 100], the grader in [0, 1]). Each case's source comes from the
// row's "prompt", its references from the row's "references" list when it has several (the
// item's reference is then a decoy the list must override) or from the item's reference.
TEST(Graders, TextSimilaritySariMatchesEvaluate) {
    const auto fixture = nlohmann::json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/sari.json"));
    ASSERT_EQ(fixture.at("evaluate_version"), "0.4.6");
    const auto& cases = fixture.at("cases");
    ASSERT_GE(cases.size(), 60u);
    std::vector<Item> items;
    for (const auto& c : cases) {
        const auto refs = c.at("references").get<std::vector<std::string>>();
        nlohmann::json row{{"prompt", c.at("source")}, {"completion", refs[0]}};
        Item it{"not the source: the row's field is read", c.at("prediction"), refs[0], ""};
        if (refs.size() > 1 || refs[0].empty()) row["references"] = refs, it.reference = "not one of the references";
        it.row_json = row.dump();
        items.push_back(it);
    }
    const auto r = grade_items("text_similarity", "metric = \"sari\"", items);
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string name = cases[i].at("name");
        EXPECT_NEAR(100 * r.scores[i], cases[i].at("sari").get<double>(), 1e-9) << name;
        EXPECT_GE(r.scores[i], 0.0) << name;
        EXPECT_LE(r.scores[i], 1.0) << name;
        EXPECT_EQ(r.reasons[i].rfind("sari ", 0), 0u) << name << ": " << r.reasons[i];
    }
    // evaluate's own docstring example, independently of the fixture file.
    const auto doc = grade_items("text_similarity", "metric = \"sari\"",
                                 {{"", "About 95 you now get in .", std::nullopt,
                                   R"({"prompt": "About 95 species are currently accepted .", "references": [
                                       "About 95 species are currently known .", "About 95 species are now accepted .",
                                       "95 species are now accepted ."]})"}});
    EXPECT_NEAR(doc.scores[0], 0.26953601953601954, 1e-12);
    EXPECT_NE(doc.reasons[0].find("3 references"), std::string::npos) << doc.reasons[0];
}

// Where sari's source and references come from: source_field (a string, or chat messages'
// last user turn), instruction_delimiter, references_field; NaN when one is missing.
TEST(Graders, TextSimilaritySariReadsTheRow) {
    const auto fixture = nlohmann::json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/sari.json"));
    nlohmann::json coedit;
    for (const auto& c : fixture.at("cases"))
        if (c.at("name") == "coedit_like") coedit = c;
    ASSERT_FALSE(coedit.is_null());
    const std::string src = coedit.at("source"), pred = coedit.at("prediction"), ref = coedit.at("references")[0];
    const double want = coedit.at("sari").get<double>() / 100;
    ASSERT_EQ(src.find(": "), std::string::npos);
    const auto row = [](const nlohmann::json& j) { return j.dump(); };
    const std::string cfg = "metric = \"sari\"\nsource_field = \"src\"\ninstruction_delimiter = \": \"\n";
    const auto r = grade_items(
        "text_similarity", cfg,
        {{"p", pred, ref, row({{"src", "Fix grammaticality in this sentence: " + src}, {"tgt", ref}})},  // CoEdIT
         {"p", pred, ref, row({{"src", src}})},                                                        // no instruction
         {"p", pred, std::nullopt, row({{"src", src}})},                                               // no reference
         {"p", pred, "", row({{"src", src}})},                                                         // empty reference
         {"p", pred, ref, row({{"prompt", src}})},                                                     // no src field
         {"p", pred, ref, row({{"src", 7}})},                                                          // not text
         {"p", pred, "x", row({{"src", src}, {"references", {ref, 3}}})},                              // not strings
         {"p", pred, ref, row({{"src", src}, {"references", nlohmann::json::array()}})}});             // empty list
    EXPECT_NEAR(r.scores[0], want, 1e-12);
    EXPECT_NEAR(r.scores[1], want, 1e-12);
    EXPECT_TRUE(std::isnan(r.scores[2]));
    EXPECT_EQ(r.reasons[2], "no reference");
    EXPECT_TRUE(std::isnan(r.scores[3]));
    EXPECT_TRUE(std::isnan(r.scores[4]));
    EXPECT_NE(r.reasons[4].find("row has no 'src'"), std::string::npos) << r.reasons[4];
    EXPECT_TRUE(std::isnan(r.scores[5]));
    EXPECT_NE(r.reasons[5].find("neither text nor messages"), std::string::npos) << r.reasons[5];
    EXPECT_TRUE(std::isnan(r.scores[6]));
    EXPECT_NE(r.reasons[6].find("must be a list of strings"), std::string::npos) << r.reasons[6];
    EXPECT_NEAR(r.scores[7], want, 1e-12);  // an empty list falls back to the reference
    // Without the delimiter the instruction is part of the source, and the score moves.
    const auto whole = grade_items("text_similarity", "metric = \"sari\"",
                                   {{"p", pred, ref, row({{"prompt", "Fix grammaticality in this sentence: " + src}})}});
    EXPECT_GT(std::abs(whole.scores[0] - want), 1e-3);
    // Chat messages: the last user turn; rows that are not JSON fall back to the item's prompt.
    const nlohmann::json messages = nlohmann::json::array(
        {{{"role", "system"}, {"content", "Edit: carefully"}}, {{"role", "user"}, {"content", "Fix grammar: " + src}},
         {{"role", "assistant"}, {"content", ref}}});
    const auto m = grade_items("text_similarity",
                               "metric = \"sari\"\nsource_field = \"messages\"\ninstruction_delimiter = \": \"\n",
                               {{"p", pred, ref, row({{"messages", messages}})}});
    EXPECT_NEAR(m.scores[0], want, 1e-12);
    const auto fallback = grade_items("text_similarity", "metric = \"sari\"", {{src, pred, ref, "not json"}});
    EXPECT_NEAR(fallback.scores[0], want, 1e-12);
    // pass_threshold turns SARI into pass / fail.
    const auto t = grade_items("text_similarity", "metric = \"sari\"\npass_threshold = 0.6",
                               {{"p", pred, ref, row({{"prompt", src}})}, {"p", "", ref, row({{"prompt", src}})}});
    EXPECT_EQ(t.scores, (std::vector<double>{1, 0}));
}

TEST(Graders, JsonMatchValidatesAndGivesPartialCredit) {
    const std::string ref = R"({"category": "meat", "aisle": 4, "organic": false})";
    auto r = grade("json_match", "", {{R"({"category": "meat", "aisle": 4, "organic": true})", ref},
                                      {"```json\n{\"category\": \"meat\", \"aisle\": 4, \"organic\": false}\n```", ref},
                                      {"category: meat", ref}});
    EXPECT_NEAR(r.scores[0], 2.0 / 3.0, 1e-12);
    EXPECT_EQ(r.scores[1], 1.0);
    EXPECT_EQ(r.scores[2], 0.0);
    EXPECT_EQ(r.reasons[2], "answer is not JSON");
    const std::string schema =
        R"(schema = '{"type": "object", "required": ["category"], "properties": {"category": {"enum": ["meat", "dairy"]}, "aisle": {"type": "integer", "minimum": 1}}, "additionalProperties": false}')";
    auto s = grade("json_match", schema, {{R"({"category": "fish"})", std::nullopt}, {R"({"aisle": 2})", std::nullopt},
                                          {R"({"category": "meat", "x": 1})", std::nullopt},
                                          {R"({"category": "dairy", "aisle": 3})", std::nullopt}});
    EXPECT_EQ(s.scores, (std::vector<double>{0, 0, 0, 1}));
    EXPECT_NE(s.reasons[0].find("not one of"), std::string::npos);
    EXPECT_NE(s.reasons[1].find("missing 'category'"), std::string::npos);
    EXPECT_NE(s.reasons[2].find("unexpected field 'x'"), std::string::npos);
    EXPECT_NEAR(grade("json_match", "fields = [\"category\"]", {{R"({"category": "meat", "aisle": 9})", ref}}).scores[0],
                1.0, 1e-12);
    EXPECT_NE(validation_error("json_match", "schema = \"{oops\"").find("not valid JSON"), std::string::npos);
}

fs::path script(const fs::path& dir, const std::string& name, const std::string& body) {
    const fs::path p = dir / name;
    write_file(p, "#!/bin/sh\n" + body);
    ::chmod(p.c_str(), 0755);
    return p;
}

TEST(Graders, ProgramRunsAnExecutableSafely) {
    auto dir = temp_dir("program");
    const auto two = std::vector<std::pair<std::string, std::optional<std::string>>>{{"a", "a"}, {"b", std::nullopt}};
    auto cfg = [](const fs::path& p, const std::string& extra = "") { return "command = [\"" + p.string() + "\"]\n" + extra; };
    // Reads the items, answers with one score per item (null = not applicable).
    const auto good = script(dir, "good.sh", "cat > /dev/null\necho '{\"scores\": [0.75, null]}'\n");
    auto r = grade("program", cfg(good), two);
    EXPECT_EQ(r.scores[0], 0.75);
    EXPECT_TRUE(std::isnan(r.scores[1]));
    // The items arrive as JSON: echo the completion count back through the exit path.
    const auto sees = script(dir, "sees.sh", "grep -q '\"completion\":\"a\"' && echo '[1, 1]' || echo '[0, 0]'\n");
    EXPECT_EQ(grade("program", cfg(sees), two).scores, (std::vector<double>{1, 1}));
    // Crash, non-zero exit, garbage, wrong count: the call fails with the reason (the
    // host then applies on_error).
    for (const auto& [name, body, why] : std::vector<std::tuple<std::string, std::string, std::string>>{
             {"crash.sh", "kill -SEGV $$\n", "killed by signal"},
             {"fail.sh", "exit 3\n", "exited with status 3"},
             {"garbage.sh", "echo 'not json'\n", "unreadable output"},
             {"count.sh", "echo '[1]'\n", "expected 2 scores"},
             {"overflow.sh", "echo '[1e400, 0]'\n", "does not fit a double"},
             // Bytes that are not UTF-8 are quoted as \xNN: the reason stays valid UTF-8.
             {"binary.sh", "printf '\\377\\376'\n", "\\xff\\xfe"}}) {
        auto g = grade("program", cfg(script(dir, name, body)), two);
        EXPECT_TRUE(g.scores.empty()) << name;
        EXPECT_NE(g.error.find(why), std::string::npos) << name << ": " << g.error;
    }
    // A program that hangs is killed at the timeout, children included.
    const auto hang = script(dir, "hang.sh", "sleep 30 &\nsleep 30\n");
    const auto t0 = std::chrono::steady_clock::now();
    auto h = grade("program", cfg(hang, "timeout_s = 0.5"), two);
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
    EXPECT_NE(h.error.find("timed out"), std::string::npos) << h.error;
    // No inherited secrets: only PATH, LANG and the configured entries.
    ::setenv("FTHOST_TEST_SECRET", "hunter2", 1);
    const auto env = script(dir, "env.sh",
                            "cat > /dev/null\n[ -z \"$FTHOST_TEST_SECRET\" ] && [ \"$MODE\" = strict ] && echo '[1, 1]' || "
                            "echo '[0, 0]'\n");
    EXPECT_EQ(grade("program", cfg(env, "env = [\"MODE=strict\"]"), two).scores, (std::vector<double>{1, 1}));
    ::unsetenv("FTHOST_TEST_SECRET");
    EXPECT_NE(validation_error("program", "command = []").find("must name a program"), std::string::npos);
    EXPECT_NE(validation_error("program", "command = [\"x\"]\nenv = [\"NOEQUALS\"]").find("KEY=VALUE"), std::string::npos);
}

// multi: sub-graders declared under it, run by the host, combined by a formula.
std::vector<PluginSection> graders_of(const std::string& grader_tables, std::string* errors = nullptr) {
    auto dir = temp_dir("multi");
    write_file(dir / "c.toml", "[run]\noutput_dir = \"o\"\n[[stage]]\nname = \"s\"\n[stage.model]\nplugin = \"decoder\"\n"
                               "[stage.param]\nplugin = \"full\"\n[stage.objective]\nplugin = \"sft\"\n"
                               "[stage.data]\ntrain = \"t.jsonl\"\n[stage.train]\nsteps = 1\n" + grader_tables);
    Diagnostics diag;
    RunConfig rc = load_run_config((dir / "c.toml").string(), {}, registry(), diag);
    if (errors) {
        for (const auto& e : diag.errors) *errors += e + "\n";
        return {};
    }
    EXPECT_TRUE(diag.ok()) << (diag.errors.empty() ? "" : diag.errors[0]);
    return rc.stages.at(0).graders;
}

// A failed call is no score: on_error = "skip" loses every item (NaN, marked), "zero"
// scores them 0, "fail" throws; a combining grader loses the items a sub-grader lost.
TEST(Graders, AFailedCallFollowsOnError) {
    auto dir = temp_dir("grade-fail");
    const fs::path broken = script(dir, "broken.sh", "exit 4\n");
    const std::string program = "plugin = \"program\"\ncommand = [\"" + broken.string() + "\"]\n";
    const std::vector<GradeInput> items = {{"p", "a", "a", "{}"}, {"p", "b", "b", "{}"}};
    auto skip = grade_all(graders_of("[[stage.grader]]\n" + program), items);
    EXPECT_TRUE(std::isnan(skip[0][0]) && std::isnan(skip[0][1]));
    EXPECT_TRUE(skip.lost_any(0) && skip.lost_any(1));
    EXPECT_EQ(skip.failures[0].calls, 1);
    EXPECT_EQ(skip.failures[0].items, 2);
    EXPECT_NE(skip.failures[0].reason.find("exited with status 4"), std::string::npos) << skip.failures[0].reason;
    auto zero = grade_all(graders_of("[[stage.grader]]\n" + program + "on_error = \"zero\"\n"), items);
    EXPECT_EQ(zero[0], (std::vector<double>{0, 0}));
    EXPECT_FALSE(zero.lost_any(0));
    EXPECT_EQ(zero.failures[0].items, 2);
    EXPECT_THROW(grade_all(graders_of("[[stage.grader]]\n" + program + "on_error = \"fail\"\n"), items), Error);
    // The second grader is unaffected by the first's failure.
    auto two = grade_all(graders_of("[[stage.grader]]\n" + program + "[[stage.grader]]\nplugin = \"exact_match\"\n"), items);
    EXPECT_EQ(two[1], (std::vector<double>{1, 1}));
    EXPECT_EQ(two.failures[1].calls, 0);
    const std::string sub = "[[stage.grader]]\nplugin = \"multi\"\nformula = \"em + 0 * bad\"\n"
                            "[stage.grader.graders.em]\nplugin = \"exact_match\"\n[stage.grader.graders.bad]\n" + program;
    auto lost = grade_all(graders_of(sub), items);
    EXPECT_TRUE(std::isnan(lost[0][0]) && lost.lost_any(0));
    EXPECT_EQ(lost.failures[0].calls, 1);
    EXPECT_NE(lost.failures[0].reason.find("sub-grader 'bad'"), std::string::npos) << lost.failures[0].reason;
    auto zeroed = grade_all(graders_of(sub + "on_error = \"zero\"\n"), items);
    EXPECT_EQ(zeroed[0], (std::vector<double>{1, 1}));  // em + 0 * 0
    EXPECT_EQ(zeroed.failures[0].calls, 1);
}

TEST(Graders, MultiCombinesNamedSubGraders) {
    const std::string subs = "[stage.grader.graders.em]\nplugin = \"exact_match\"\n"
                             "[stage.grader.graders.sim]\nplugin = \"text_similarity\"\n";
    const std::vector<GradeInput> items = {{"p", "cat sat", "cat sat down", "{}"}, {"p", "x", "x", "{}"}};
    auto g = graders_of("[[stage.grader]]\nplugin = \"multi\"\nformula = \"0.5 * em + 0.5 * sim\"\n" + subs);
    ASSERT_EQ(g.size(), 1u);
    ASSERT_EQ(g[0].children.size(), 2u);
    auto scores = grade_all(g, items);
    EXPECT_NEAR(scores[0][0], 0.4, 1e-12);  // exact 0, F1 0.8
    EXPECT_NEAR(scores[0][1], 1.0, 1e-12);
    g = graders_of("[[stage.grader]]\nplugin = \"multi\"\nformula = \"max(em, sim) ^ 2 - min(1, abs(-0.04))\"\n" + subs);
    EXPECT_NEAR(grade_all(g, items)[0][0], 0.64 - 0.04, 1e-12);
    g = graders_of("[[stage.grader]]\nplugin = \"multi\"\n" + subs);  // no formula: the mean
    EXPECT_NEAR(grade_all(g, items)[0][0], 0.4, 1e-12);
    std::string errors;
    graders_of("[[stage.grader]]\nplugin = \"multi\"\nformula = \"em +\"\n" + subs, &errors);
    EXPECT_NE(errors.find("formula \"em +\""), std::string::npos) << errors;
    errors.clear();
    graders_of("[[stage.grader]]\nplugin = \"multi\"\n", &errors);
    EXPECT_NE(errors.find("needs sub-graders"), std::string::npos) << errors;
    errors.clear();
    graders_of("[[stage.grader]]\nplugin = \"multi\"\n[stage.grader.graders.inner]\nplugin = \"multi\"\n"
               "[stage.grader.graders.inner.graders.em]\nplugin = \"exact_match\"\n", &errors);
    EXPECT_NE(errors.find("do not nest"), std::string::npos) << errors;
    errors.clear();
    graders_of("[[stage.grader]]\nplugin = \"exact_match\"\n[stage.grader.graders.em]\nplugin = \"exact_match\"\n", &errors);
    EXPECT_NE(errors.find("unknown key 'graders'"), std::string::npos) << errors;
}

}  // namespace
}  // namespace fthost::test
