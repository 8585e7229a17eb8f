// Data: which tokens carry loss, malformed JSONL, batches and their order.
#include "data/dataset.hpp"
#include "data/jsonl_reader.hpp"
#include "test_support.hpp"

namespace fthost::test {
namespace {

using json = nlohmann::json;

TEST(LossMask, PromptCompletionLabelsExactlyTheCompletionAndEos) {
    const TextCodec& tok = *TextCodec::bytes();
    Example ex = make_example(json{{"prompt", "Q: 2+2?"}, {"completion", " 4"}}, tok, FT_LABELS_COMPLETION, 256);
    ASSERT_EQ(ex.ids.size(), 7u + 2u + 1u);
    for (size_t i = 0; i < 7; ++i) EXPECT_EQ(ex.labels[i], -100) << i;
    EXPECT_EQ(ex.labels[7], ' ');
    EXPECT_EQ(ex.labels[8], '4');
    EXPECT_EQ(ex.labels[9], ByteTokenizer::kEos);
    EXPECT_EQ(ex.prompt_ids.size(), 7u);
    EXPECT_EQ(ex.reference, " 4");
}

TEST(LossMask, CptLabelsEveryTokenButTheFirst) {
    const TextCodec& tok = *TextCodec::bytes();
    Example ex = make_example(json{{"prompt", "ab"}, {"completion", "c"}}, tok, FT_LABELS_ALL, 256);
    EXPECT_EQ(ex.labels, (std::vector<int64_t>{-100, 'b', 'c', ByteTokenizer::kEos}));
    Example t = make_example(json{{"text", "xyz"}}, tok, FT_LABELS_COMPLETION, 256);
    EXPECT_EQ(t.labels, (std::vector<int64_t>{-100, 'y', 'z', ByteTokenizer::kEos}));
}

TEST(LossMask, ChatMlLabelsOnlyAssistantTurns) {
    const TextCodec& tok = *TextCodec::bytes();
    json row = {{"messages", json::array({{{"role", "system"}, {"content", "be brief"}},
                                          {{"role", "user"}, {"content", "hi"}},
                                          {{"role", "assistant"}, {"content", "yo"}}})}};
    Example ex = make_example(row, tok, FT_LABELS_COMPLETION, 512);
    EXPECT_EQ(labelled(ex), (std::vector<int64_t>{'y', 'o', ByteTokenizer::kImEnd}));
    EXPECT_EQ(tok.decode(ex.prompt_ids), "system\nbe brief\nuser\nhi\nassistant\n");
    EXPECT_EQ(ex.prompt_ids.back(), '\n');
    EXPECT_EQ(ex.reference, "yo");
}

TEST(LossMask, TruncationKeepsLabelsAligned) {
    const TextCodec& tok = *TextCodec::bytes();
    Example ex = make_example(json{{"prompt", "abc"}, {"completion", "defgh"}}, tok, FT_LABELS_COMPLETION, 5);
    EXPECT_EQ(ex.ids.size(), 5u);
    EXPECT_EQ(labelled(ex), (std::vector<int64_t>{'d', 'e'}));
}

TEST(Jsonl, MalformedLineIsAnErrorNamingFileAndLine) {
    auto dir = temp_dir("jsonl");
    write_file(dir / "d.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"\n{\"text\": \"c\"}\n");
    const TextCodec& tok = *TextCodec::bytes();
    try {
        load_examples((dir / "d.jsonl").string(), false, tok, FT_LABELS_ALL, 64);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("d.jsonl:3: malformed JSON"), std::string::npos) << e.what();
    }
    JsonlStats stats;
    auto ex = load_examples((dir / "d.jsonl").string(), true, tok, FT_LABELS_ALL, 64, &stats);
    EXPECT_EQ(ex.size(), 2u);
    EXPECT_EQ(stats.skipped, 1);
}

TEST(Jsonl, RowsOfUnknownShapeAreErrors) {
    auto dir = temp_dir("shape");
    const TextCodec& tok = *TextCodec::bytes();
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"{\"question\": \"x\"}", "row has none of 'text'"},
        {"[1, 2]", "a line must be a JSON object"},
        {"{\"prompt\": \"x\"}", "a prompt/completion row needs both 'prompt' and 'completion'"},
        {"{\"text\": 3}", "field 'text' must be a string"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "'messages' has no assistant turn"},
        {"{\"messages\": [{\"role\": \"user\"}]}", "message 0 needs string 'role' and 'content'"},
    };
    for (const auto& [line, why] : cases) {
        write_file(dir / "d.jsonl", "{\"text\": \"ok\"}\n" + line + "\n");
        try {
            load_examples((dir / "d.jsonl").string(), false, tok, FT_LABELS_COMPLETION, 64);
            ADD_FAILURE() << "no error for " << line;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("d.jsonl:2: " + why), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(load_examples((dir / "missing.jsonl").string(), false, tok, FT_LABELS_ALL, 64), Error);
}

TEST(Batches, PackedRowsRestartPositionsAndSeparateDocuments) {
    std::vector<Example> ex = {text_example("ab"), text_example("cde")};
    HostBatch b = collate({{&ex[0], &ex[1]}});
    EXPECT_TRUE(b.position_ids.equal(at::tensor({0, 1, 2, 0, 1, 2, 3}, at::kLong).view({1, 7})));
    EXPECT_TRUE(b.sequence_ids.equal(at::tensor({0, 0, 0, 1, 1, 1, 1}, at::kLong).view({1, 7})));
    EXPECT_EQ(b.num_labels, 2 + 3);
    HostBatch p = collate({{&ex[0]}, {&ex[1]}});
    EXPECT_EQ(p.sequence_ids[0][3].item<int64_t>(), -1);
    EXPECT_EQ(p.labels[0][3].item<int64_t>(), -100);
    EXPECT_EQ(p.num_tokens, 7);
}

TEST(Batches, StreamOrderIsSeededAndSeekable) {
    std::vector<Example> ex;
    for (int i = 0; i < 20; ++i) ex.push_back(text_example("example " + std::to_string(i)));
    BatchStream a(ex, 3, 64, false, true, 5), b(ex, 3, 64, false, true, 5), c(ex, 3, 64, false, true, 6);
    EXPECT_EQ(a.batches_per_epoch(), 7);
    a.next();
    auto pos = a.position();
    HostBatch a2 = a.next();
    b.next();
    EXPECT_TRUE(a2.input_ids.equal(b.next().input_ids));
    c.next();
    EXPECT_FALSE(a2.input_ids.equal(c.next().input_ids));
    a.seek(pos);
    EXPECT_TRUE(a.next().input_ids.equal(a2.input_ids));
    BatchStream packed(ex, 2, 64, true, false, 5);
    EXPECT_LT(packed.batches_per_epoch(), a.batches_per_epoch());
}

TEST(Batches, EvalFractionHoldsOutASeededSubset) {
    auto dir = temp_dir("split");
    std::string rows;
    for (int i = 0; i < 100; ++i) rows += "{\"text\": \"row " + std::to_string(i) + "\"}\n";
    write_file(dir / "d.jsonl", rows);
    DataConfig cfg;
    cfg.train_file = (dir / "d.jsonl").string();
    cfg.eval_fraction = 0.2;
    auto d = load_datasets(cfg, *TextCodec::bytes(), FT_LABELS_ALL, 1);
    EXPECT_EQ(d.eval.size(), 20u);
    EXPECT_EQ(d.train.size(), 80u);
    auto d2 = load_datasets(cfg, *TextCodec::bytes(), FT_LABELS_ALL, 1);
    EXPECT_EQ(d.eval[0].ids, d2.eval[0].ids);
}

}  // namespace
}  // namespace fthost::test
