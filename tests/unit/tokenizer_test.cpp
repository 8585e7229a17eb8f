// Tokenizers of real checkpoints (host/tokenizer/) against the reference libraries: for
// the tokenizers in tests/fixtures/tokenizers/ (byte-level BPE in GPT-2, Llama 3 and
// Qwen2 style made with `tokenizers`; SentencePiece BPE with byte fallback and unigram
// made with `sentencepiece`; make_tokenizer_fixtures.py), every test string — Unicode,
// whitespace runs, digits, emoji, special-token strings — encodes to the same ids (with
// and without the tokenizer's own special tokens) and decodes to the same text.
#include "test_support.hpp"

#include "tokenizer/tokenizer.hpp"

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

const json& expected() {
    static const json j = json::parse(std::ifstream(fs::path(source_dir()) / "tests/fixtures/tokenizers/expected.json"));
    return j;
}

TEST(Tokenizer, EncodeAndDecodeEqualTheReferenceLibraries) {
    const auto strings = expected()["strings"].get<std::vector<std::string>>();
    int checked = 0;
    for (const auto& [name, rows] : expected()["cases"].items()) {
        const auto tok = host::load_tokenizer(fs::path(source_dir()) / "tests/fixtures/tokenizers" / name);
        ASSERT_EQ(rows.size(), strings.size());
        for (size_t i = 0; i < strings.size(); ++i) {
            const auto want = rows[i]["ids"].get<std::vector<int64_t>>();
            EXPECT_EQ(tok->encode(strings[i], false), want) << name << " string " << i << ": " << strings[i];
            EXPECT_EQ(tok->encode(strings[i], true), rows[i]["ids_special"].get<std::vector<int64_t>>())
                << name << " (special) string " << i;
            EXPECT_EQ(tok->decode(want, false), rows[i]["decoded"].get<std::string>()) << name << " decode " << i;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 5 * 37);
}

TEST(Tokenizer, SpecialTokensAreFoundAndSkippable) {
    const auto tok = host::load_tokenizer(fs::path(source_dir()) / "tests/fixtures/tokenizers/qwen2");
    const auto start = tok->token_to_id("<|im_start|>");
    ASSERT_TRUE(start.has_value());
    const auto ids = tok->encode("<|im_start|>user\nhi", false);
    EXPECT_EQ(ids.front(), *start);
    EXPECT_EQ(tok->decode(ids, true), "user\nhi");
    EXPECT_FALSE(tok->token_to_id("<|no such token|>").has_value());
}

TEST(Tokenizer, PartialUtf8DecodesToReplacementCharacters) {
    EXPECT_EQ(host::utf8_lossy("ok\xF0\x9F"), "ok\xEF\xBF\xBD");
    EXPECT_EQ(host::utf8_lossy("\xC3\x28"), "\xEF\xBF\xBD(");
    EXPECT_EQ(host::utf8_lossy("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(Tokenizer, MissingOrUnsupportedFilesAreNamed) {
    const fs::path d = temp_dir("tok_missing");
    fs::create_directories(d);
    try {
        host::load_tokenizer(d);
        FAIL() << "loaded a tokenizer from an empty folder";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no tokenizer.json or tokenizer.model"), std::string::npos);
    }
    write_file(d / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    try {
        host::load_tokenizer(d);
        FAIL() << "loaded a WordPiece tokenizer";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model type 'WordPiece' is not supported"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace fthost::test
