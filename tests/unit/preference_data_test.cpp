// Preference and feedback rows: TRL's field names (plain text or message lists), which
// tokens carry loss, the partner row, and how a shaped batch lays the rows out.
#include "data/batch_stream.hpp"
#include "data/dataset.hpp"
#include "test_support.hpp"

namespace fthost::test {
namespace {

using json = nlohmann::json;

std::string what_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

TEST(PreferenceRows, PairLabelsBothCompletionsAfterTheSamePrompt) {
    const TextCodec& tok = *TextCodec::bytes();
    Example ex = make_example(json{{"prompt", "q:"}, {"chosen", " yes"}, {"rejected", " no"}}, tok, FT_LABELS_COMPLETION,
                              64, FT_DATA_PAIRS);
    ASSERT_EQ(ex.partner.size(), 1u);
    const Example& rej = ex.partner[0];
    EXPECT_EQ(labelled(ex), (std::vector<int64_t>{' ', 'y', 'e', 's', ByteTokenizer::kEos}));
    EXPECT_EQ(labelled(rej), (std::vector<int64_t>{' ', 'n', 'o', ByteTokenizer::kEos}));
    EXPECT_EQ(ex.completion_mask, (std::vector<int64_t>{0, 0, 1, 1, 1, 1, 1}));
    EXPECT_EQ(ex.prompt_ids, rej.prompt_ids);
    EXPECT_EQ(ex.prompt_length, 2);
    EXPECT_EQ(ex.reference, " yes");
    // ORPO labels the prompt too (all tokens but the first); the completion mask stays.
    Example all = make_example(json{{"prompt", "q:"}, {"chosen", " a"}, {"rejected", " b"}}, tok, FT_LABELS_ALL, 64,
                               FT_DATA_PAIRS);
    EXPECT_EQ(labelled(all), (std::vector<int64_t>{':', ' ', 'a', ByteTokenizer::kEos}));
    EXPECT_EQ(all.completion_mask, (std::vector<int64_t>{0, 0, 1, 1, 1}));
}

TEST(PreferenceRows, ConversationalPairRendersChatMlWithAnOpenAssistantTurn) {
    const TextCodec& tok = *TextCodec::bytes();
    json row = {{"prompt", json::array({{{"role", "user"}, {"content", "hi"}}})},
                {"chosen", json::array({{{"role", "assistant"}, {"content", "yo"}}})},
                {"rejected", json::array({{{"role", "assistant"}, {"content", "go away"}}})}};
    Example ex = make_example(row, tok, FT_LABELS_COMPLETION, 128, FT_DATA_PAIRS);
    EXPECT_EQ(tok.decode(ex.prompt_ids), "user\nhi\nassistant\n");
    EXPECT_EQ(ex.prompt_ids.front(), ByteTokenizer::kImStart);
    EXPECT_EQ(labelled(ex), (std::vector<int64_t>{'y', 'o', ByteTokenizer::kImEnd}));
    EXPECT_EQ(ex.reference, "yo");
    EXPECT_EQ(ex.partner[0].reference, "go away");
    row["chosen"][0]["role"] = "user";
    EXPECT_NE(what_of([&] { make_example(row, tok, FT_LABELS_COMPLETION, 128, FT_DATA_PAIRS); }).find("role 'assistant'"),
              std::string::npos);
}

TEST(PreferenceRows, FeedbackRowsNeedABooleanLabel) {
    const TextCodec& tok = *TextCodec::bytes();
    Example ex = make_example(json{{"prompt", "q"}, {"completion", " a"}, {"label", false}}, tok, FT_LABELS_COMPLETION, 64,
                              FT_DATA_FEEDBACK);
    EXPECT_EQ(ex.desirable, 0);
    EXPECT_NE(what_of([&] { make_example(json{{"prompt", "q"}, {"completion", " a"}}, tok, FT_LABELS_COMPLETION, 64,
                                         FT_DATA_FEEDBACK); })
                  .find("needs 'label'"),
              std::string::npos);
    EXPECT_NE(what_of([&] { make_example(json{{"prompt", "q"}, {"completion", " a"}, {"label", 1}}, tok,
                                         FT_LABELS_COMPLETION, 64, FT_DATA_FEEDBACK); })
                  .find("true (desirable) or false"),
              std::string::npos);
    EXPECT_NE(what_of([&] { make_example(json{{"prompt", "q"}, {"chosen", " a"}}, tok, FT_LABELS_COMPLETION, 64,
                                         FT_DATA_PAIRS); })
                  .find("needs 'rejected'"),
              std::string::npos);
    // A preference row handed to an objective on single sequences says what to use.
    EXPECT_NE(what_of([&] { make_example(json{{"prompt", "q"}, {"chosen", " a"}, {"rejected", " b"}}, tok,
                                         FT_LABELS_COMPLETION, 64); })
                  .find("preference objective"),
              std::string::npos);
}

TEST(PreferenceRows, KlRowsPairEachPromptWithThePreviousCompletionPerChunk) {
    const TextCodec& tok = *TextCodec::bytes();
    std::vector<Example> ex;
    for (const char* c : {"a", "b", "c", "d", "e"})
        ex.push_back(make_example(json{{"prompt", std::string("p") + c}, {"completion", std::string(" ") + c},
                                       {"label", true}},
                                  tok, FT_LABELS_COMPLETION, 64, FT_DATA_FEEDBACK));
    add_mismatched_rows(ex, 3, 64);  // chunks {a, b, c} and {d, e}
    auto kl = [&](int i) { return tok.decode(ex[i].partner[0].ids); };
    EXPECT_EQ(kl(0), "pa c");  // the chunk's first takes its last's completion
    EXPECT_EQ(kl(1), "pb a");
    EXPECT_EQ(kl(2), "pc b");
    EXPECT_EQ(kl(3), "pd e");
    EXPECT_EQ(kl(4), "pe d");
    // Labels on the borrowed completion only (+ EOS).
    EXPECT_EQ(labelled(ex[0].partner[0]), (std::vector<int64_t>{' ', 'c', ByteTokenizer::kEos}));
}

// Found by tests/fuzz/fuzz_jsonl (corpus/jsonl/regress-kl-row-longer-than-max-seq-len): a
// prompt longer than max_seq_len is cut in the example's ids but kept whole in its
// prompt_ids, so the KL row that borrows a completion truncated away was max_seq_len-free.
TEST(PreferenceRows, KlRowsAreTruncatedToMaxSeqLenToo) {
    const TextCodec& tok = *TextCodec::bytes();
    std::vector<Example> ex;
    for (const char* c : {"a", "b"})
        ex.push_back(make_example(json{{"prompt", std::string(40, 'p')}, {"completion", std::string(" ") + c},
                                       {"label", true}},
                                  tok, FT_LABELS_ALL, 16, FT_DATA_FEEDBACK));
    add_mismatched_rows(ex, 2, 16);
    for (const auto& e : ex) {
        ASSERT_EQ(e.partner.size(), 1u);
        const Example& kl = e.partner[0];
        EXPECT_EQ(kl.ids.size(), 16u);
        EXPECT_EQ(kl.labels.size(), kl.ids.size());
        EXPECT_EQ(kl.completion_mask.size(), kl.ids.size());
        EXPECT_EQ(kl.num_labels(), 0);  // the borrowed completion was truncated away: nothing to score
    }
    HostBatch b = collate_shaped({&ex[0], &ex[1]}, FT_DATA_FEEDBACK);
    EXPECT_LE(b.input_ids.size(1), 16);
}

TEST(PreferenceRows, ShapedBatchesPutPartnersInTheSecondHalf) {
    const TextCodec& tok = *TextCodec::bytes();
    std::vector<Example> pairs;
    for (const char* c : {"x", "yy"})
        pairs.push_back(make_example(json{{"prompt", "q"}, {"chosen", std::string(" ") + c}, {"rejected", " no"}}, tok,
                                     FT_LABELS_COMPLETION, 64, FT_DATA_PAIRS));
    HostBatch b = collate_shaped({&pairs[0], &pairs[1]}, FT_DATA_PAIRS);
    ASSERT_EQ(b.input_ids.size(0), 4);
    EXPECT_EQ(b.num_examples, 2);
    EXPECT_EQ(b.examples.size(), 4u);
    EXPECT_EQ(b.input_ids[0][2].item<int64_t>(), 'x');
    EXPECT_EQ(b.input_ids[1][2].item<int64_t>(), 'y');
    EXPECT_EQ(b.input_ids[2][2].item<int64_t>(), 'n');
    EXPECT_EQ(b.input_ids[3][2].item<int64_t>(), 'n');
    EXPECT_EQ(b.completion_mask[1].sum().item<int64_t>(), 4);  // " yy" + EOS
    EXPECT_FALSE(b.desirable.defined());

    std::vector<Example> fb;
    for (bool good : {true, false})
        fb.push_back(make_example(json{{"prompt", "q"}, {"completion", " a"}, {"label", good}}, tok, FT_LABELS_COMPLETION,
                                  64, FT_DATA_FEEDBACK));
    add_mismatched_rows(fb, 8, 64);
    HostBatch k = collate_shaped({&fb[0], &fb[1]}, FT_DATA_FEEDBACK);
    EXPECT_EQ(k.input_ids.size(0), 4);
    EXPECT_EQ(k.desirable.sizes(), (at::IntArrayRef{2}));
    EXPECT_EQ(k.desirable[0].item<int64_t>(), 1);
    EXPECT_EQ(k.desirable[1].item<int64_t>(), 0);
    // A pair batch from examples loaded without partners is refused with a reason.
    Example lone = make_example(json{{"prompt", "q"}, {"completion", " a"}}, tok, FT_LABELS_COMPLETION, 64);
    EXPECT_NE(what_of([&] { collate_shaped({&lone}, FT_DATA_PAIRS); }).find("second row"), std::string::npos);
}

TEST(PreferenceRows, MalformedPreferenceLineNamesFileAndLine) {
    auto dir = temp_dir("pref-jsonl");
    write_file(dir / "p.jsonl", "{\"prompt\": \"q\", \"chosen\": \" a\", \"rejected\": \" b\"}\n"
                                "{\"prompt\": \"q\", \"chosen\": 3, \"rejected\": \" b\"}\n");
    const std::string msg = what_of([&] {
        load_examples((dir / "p.jsonl").string(), false, *TextCodec::bytes(), FT_LABELS_COMPLETION, 64, nullptr, FT_DATA_PAIRS);
    });
    EXPECT_NE(msg.find("p.jsonl:2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'chosen'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace fthost::test
