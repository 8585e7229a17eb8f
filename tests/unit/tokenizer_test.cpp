// Tokenizers of real checkpoints (host/tokenizer/) against the reference libraries: for
// the tokenizers in tests/fixtures/tokenizers/ (byte-level BPE in GPT-2, Llama 3 and
// Qwen2 style made with `tokenizers`; SentencePiece BPE with byte fallback and unigram
// made with `sentencepiece`; make_tokenizer_fixtures.py), every test string — Unicode,
// whitespace runs, digits, emoji, special-token strings — encodes to the same ids (with
// and without the tokenizer's own special tokens) and decodes to the same text. T5
// (t5_expected.json): a unigram spiece.model with T5's settings, the tokenizer.json files
// transformers 4 and 5 convert it to (Unigram model, Precompiled charsmap, Metaspace),
// against the `tokenizers` library (ids, decodes, byte offsets) and transformers 4's slow
// T5Tokenizer over sentencepiece (ids, decodes; sentencepiece's offsets). SentencePiece BPE
// as tokenizer.json (spm_json_expected.json): the SentencePiece fixture converted as Llama 2
// / Mistral / Phi-3 (Prepend + Replace, Strip decoder), transformers 5's Llama (Metaspace)
// and Gemma (Replace, Split, added turn markers) ship it, against `tokenizers`' ids, byte
// offsets and decodes.
#include "test_support.hpp"

#include "tokenizer/tokenizer.hpp"

#include <fstream>
#include <functional>

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

TEST(Tokenizer, SentencePieceBpeAsTokenizerJsonEqualsTokenizers) {
    const fs::path dir = fs::path(source_dir()) / "tests/fixtures/tokenizers";
    const json j = json::parse(std::ifstream(dir / "spm_json_expected.json"));
    const auto strings = j["strings"].get<std::vector<std::string>>();
    int checked = 0;
    for (const auto& [name, rows] : j["cases"].items()) {
        const auto tok = host::load_tokenizer(dir / name);
        ASSERT_EQ(rows.size(), strings.size());
        for (size_t i = 0; i < strings.size(); ++i) {
            const auto& row = rows[i];
            const auto want = row["ids"].get<std::vector<int64_t>>();
            std::vector<size_t> starts;
            EXPECT_EQ(tok->encode_with_offsets(strings[i], starts), want) << name << " string " << i << ": " << strings[i];
            EXPECT_EQ(starts, row["starts"].get<std::vector<size_t>>()) << name << " offsets " << i << ": " << strings[i];
            EXPECT_EQ(tok->encode(strings[i], true), row["ids_special"].get<std::vector<int64_t>>()) << name << " " << i;
            EXPECT_EQ(tok->decode(want, false), row["decoded"].get<std::string>()) << name << " decode " << i;
            EXPECT_EQ(tok->decode(want, true), row["decoded_skip"].get<std::string>()) << name << " decode (skip) " << i;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 3 * 10);
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

// Found by tests/fuzz/fuzz_chat_template (corpus/chat_template/regress-nul-in-text): the NFC
// normaliser read its input up to the first NUL, so everything after a U+0000 in a text was
// dropped. The ids are the `tokenizers` library's (0.23.3) for the qwen2 fixture.
TEST(Tokenizer, TextAfterANulCharacterIsEncoded) {
    const auto tok = host::load_tokenizer(fs::path(source_dir()) / "tests/fixtures/tokenizers/qwen2");
    EXPECT_EQ(tok->encode(std::string("a\0b c", 5), false), (std::vector<int64_t>{67, 191, 68, 279}));
    // NFC still composes on both sides of the NUL: e + U+0301 -> U+00E9.
    EXPECT_EQ(tok->encode(std::string("cafe\xCC\x81\0e\xCC\x81", 10), false),
              (std::vector<int64_t>{69, 67, 72, 130, 105, 191, 130, 105}));
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
        EXPECT_NE(std::string(e.what()).find("no tokenizer.json, tokenizer.model or spiece.model"), std::string::npos);
    }
    write_file(d / "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    try {
        host::load_tokenizer(d);
        FAIL() << "loaded a WordPiece tokenizer";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("model type 'WordPiece' is not supported"), std::string::npos) << e.what();
    }
}

// A tokenizer.json that lacks a key, or is garbage, is an error naming the file (and the
// key), in valid UTF-8 — not the JSON library's bare message.
TEST(Tokenizer, MissingMergesAndGarbageNameTheFileAndKey) {
    const fs::path d = temp_dir("tok_garbage");
    const std::string file = (d / "tokenizer.json").string();
    auto message = [&](const std::string& text) {
        write_file(d / "tokenizer.json", text);
        try {
            host::load_tokenizer(d);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        ADD_FAILURE() << "loaded " << text;
        return std::string();
    };
    std::string m = message(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})");
    EXPECT_NE(m.find(file + ": model.merges is missing"), std::string::npos) << m;
    m = message(R"({"model": {"type": "BPE", "merges": []}})");
    EXPECT_NE(m.find(file + ": model.vocab is missing"), std::string::npos) << m;
    m = message(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 7}})");
    EXPECT_NE(m.find(file + ": model.merges must be a list"), std::string::npos) << m;
    m = message(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})");
    EXPECT_NE(m.find(file + ": unexpected tokenizer.json structure"), std::string::npos) << m;
    m = message("{\"model\": {\"type\": \"BPE\xC3\x28\"");
    EXPECT_NE(m.find(file + ": not valid JSON"), std::string::npos) << m;
    EXPECT_EQ(host::utf8_lossy(m), m);
}

const fs::path kTokenizers = fs::path(source_dir()) / "tests/fixtures/tokenizers";

const json& t5_expected() {
    static const json j = json::parse(std::ifstream(kTokenizers / "t5_expected.json"));
    return j;
}

// A directory with T5's spiece.model and the given tokenizer_config.json (and no
// tokenizer.json, so that load_tokenizer reads the SentencePiece model).
fs::path spiece_dir(const std::string& name, const json& config) {
    const fs::path d = temp_dir("t5_" + name);
    fs::copy_file(kTokenizers / "t5/spiece.model", d / "spiece.model", fs::copy_options::overwrite_existing);
    fs::copy_file(kTokenizers / "t5/special_tokens_map.json", d / "special_tokens_map.json",
                  fs::copy_options::overwrite_existing);
    write_file(d / "tokenizer_config.json", config.dump());
    return d;
}

json t5_config() { return json::parse(std::ifstream(kTokenizers / "t5/tokenizer_config.json")); }

// Every T5 test string against `rows`: ids with and without </s>, both decodes and, where
// the reference has them, each token's byte offset. Returns how many strings it checked.
int check_t5(const host::Tokenizer& tok, const json& rows, const std::string& name, const char* decoded = "decoded") {
    const auto strings = t5_expected()["strings"].get<std::vector<std::string>>();
    EXPECT_EQ(rows.size(), strings.size());
    int checked = 0;
    for (size_t i = 0; i < strings.size() && i < rows.size(); ++i) {
        const auto& row = rows[i];
        const auto want = row["ids"].get<std::vector<int64_t>>();
        std::vector<size_t> starts;
        EXPECT_EQ(tok.encode_with_offsets(strings[i], starts), want) << name << " string " << i << ": " << strings[i];
        EXPECT_EQ(tok.encode(strings[i], false), want) << name << " string " << i;
        EXPECT_EQ(tok.encode(strings[i], true), row["ids_special"].get<std::vector<int64_t>>())
            << name << " (special) string " << i << ": " << strings[i];
        EXPECT_EQ(tok.decode(want, false), row[decoded].get<std::string>()) << name << " decode " << i;
        if (std::string(decoded) == "decoded")
            EXPECT_EQ(tok.decode(want, true), row["decoded_skip"].get<std::string>()) << name << " decode (skip) " << i;
        if (row.contains("starts"))
            EXPECT_EQ(starts, row["starts"].get<std::vector<size_t>>()) << name << " offsets " << i << ": " << strings[i];
        ++checked;
    }
    return checked;
}

TEST(Tokenizer, T5EqualsTokenizersAndTransformersSlowT5Tokenizer) {
    const size_t n = t5_expected()["strings"].size();
    ASSERT_GT(n, 50u);
    // tokenizer.json as transformers 4 writes it (Precompiled + Strip + Replace, Metaspace)
    // and as transformers 5 does (Precompiled; WhitespaceSplit + Metaspace): the tokenizers library.
    int checked = 0;
    for (const char* name : {"t5", "t5_v5"})
        checked += check_t5(*host::load_tokenizer(kTokenizers / name), t5_expected()["cases"][name], name);
    // spiece.model with the tokenizer_config.json transformers 4 saved: its slow T5Tokenizer.
    checked += check_t5(*host::load_tokenizer(spiece_dir("saved", t5_config())), t5_expected()["cases"]["spiece"], "spiece");
    EXPECT_EQ(checked, static_cast<int>(3 * n));
    // The libraries differ (spacing around sentinels when decoding, how the charsmap's
    // rules apply, a final </s> already there), so each path is held to its own.
    EXPECT_NE(t5_expected()["cases"]["spiece"], t5_expected()["cases"]["t5"]);
}

TEST(Tokenizer, T5SpieceWithTheHubsConfigAndCleanUp) {
    // google/flan-t5-*'s tokenizer_config.json: no added_tokens_decoder, so the sentinels'
    // ids come from extra_ids; the slow tokenizer encodes and decodes as with the saved one.
    const auto hub = host::load_tokenizer(spiece_dir("hub", t5_expected()["hub_config"]));
    EXPECT_EQ(check_t5(*hub, t5_expected()["cases"]["spiece"], "spiece (hub config)"),
              static_cast<int>(t5_expected()["strings"].size()));
    json config = t5_config();
    config["clean_up_tokenization_spaces"] = true;
    check_t5(*host::load_tokenizer(spiece_dir("cleanup", config)), t5_expected()["cases"]["spiece"], "spiece (clean-up)",
             "decoded_cleanup");
}

TEST(Tokenizer, T5SentinelIdsAndVocabularySizeAreTransformers) {
    // tokenizer_config.json's added_tokens_decoder is transformers' table of the added
    // tokens: <pad> </s> <unk> and <extra_id_99> .. <extra_id_0> after the 400 pieces.
    const json decoder = t5_config()["added_tokens_decoder"];
    ASSERT_EQ(decoder.size(), 103u);
    int64_t size = 0;
    for (const auto& [id, _] : decoder.items()) size = std::max<int64_t>(size, std::stoll(id) + 1);
    const std::vector<std::pair<std::string, std::unique_ptr<host::Tokenizer>>> toks = [] {
        std::vector<std::pair<std::string, std::unique_ptr<host::Tokenizer>>> v;
        v.emplace_back("t5", host::load_tokenizer(kTokenizers / "t5"));
        v.emplace_back("t5_v5", host::load_tokenizer(kTokenizers / "t5_v5"));
        v.emplace_back("spiece", host::load_tokenizer(spiece_dir("ids", t5_config())));
        v.emplace_back("spiece (hub config)", host::load_tokenizer(spiece_dir("ids_hub", t5_expected()["hub_config"])));
        return v;
    }();
    for (const auto& [name, tok] : toks) {
        EXPECT_EQ(tok->vocab_size(), size) << name;
        for (const auto& [id, t] : decoder.items())
            EXPECT_EQ(tok->token_to_id(t["content"].get<std::string>()), std::stoll(id)) << name << " " << t["content"];
        EXPECT_FALSE(tok->token_to_id("<extra_id_100>").has_value()) << name;
    }
}

TEST(Tokenizer, T5TokenizerJsonMetaspaceVariants) {
    const json v5 = json::parse(std::ifstream(kTokenizers / "t5_v5/tokenizer.json"));
    auto load = [](const std::string& name, const json& j) {
        const fs::path d = temp_dir(name);
        write_file(d / "tokenizer.json", j.dump());
        return host::load_tokenizer(d);
    };
    // The Hub's T5 files predate prepend_scheme: "add_prefix_space": true, "str_rep", no
    // "split". tokenizers reads them as prepend_scheme always, split true.
    json old = v5;
    for (json* m : {&old["pre_tokenizer"]["pretokenizers"][1], &old["decoder"]}) {
        ASSERT_EQ((*m)["type"], "Metaspace");
        m->erase("prepend_scheme");
        m->erase("split");
        (*m)["add_prefix_space"] = true;
        (*m)["str_rep"] = "\xE2\x96\x81";
    }
    check_t5(*load("t5_old_keys", old), t5_expected()["cases"]["t5_v5"], "t5_v5 (older keys)");
    // prepend_scheme first (a legacy=False T5Tokenizer converted by transformers 4): only
    // the piece at the start of the text gets "▁" (make_tokenizer_fixtures.py, same change).
    json first = v5;
    for (json* m : {&first["pre_tokenizer"]["pretokenizers"][1], &first["decoder"]}) (*m)["prepend_scheme"] = "first";
    check_t5(*load("t5_first", first), t5_expected()["cases"]["t5_v5_first"], "t5_v5 (prepend_scheme first)");
}

TEST(Tokenizer, UnsupportedPartsOfAT5FileAreNamed) {
    const json j = json::parse(std::ifstream(kTokenizers / "t5_v5/tokenizer.json"));
    const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
        {[](json& x) { x["normalizer"] = {{"type", "NFKD"}}; }, "normalizer type 'NFKD' is not supported"},
        {[](json& x) {
             x["normalizer"] = {{"type", "Sequence"}, {"normalizers", {x["normalizer"], {{"type", "Lowercase"}}}}};
         },
         "normalizer type 'Lowercase' is not supported"},
        {[](json& x) { x["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "pre-tokenizer type 'Whitespace' is not supported"},
        {[](json& x) { x["decoder"] = {{"type", "WordPiece"}}; }, "decoder type 'WordPiece' is not supported"},
        {[](json& x) { x["added_tokens"][0]["single_word"] = true; }, "added token option single_word is not supported"},
    };
    for (size_t i = 0; i < cases.size(); ++i) {
        json x = j;
        cases[i].first(x);
        const fs::path d = temp_dir("t5_unsupported_" + std::to_string(i));
        write_file(d / "tokenizer.json", x.dump());
        try {
            host::load_tokenizer(d);
            ADD_FAILURE() << "loaded: " << cases[i].second;
        } catch (const Error& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find((d / "tokenizer.json").string() + ": " + cases[i].second), std::string::npos) << what;
            EXPECT_EQ(e.status(), FT_ERR_UNSUPPORTED);
        }
    }
    // transformers' non-legacy T5Tokenizer is not what the SentencePiece path does.
    json config = t5_config();
    config["legacy"] = false;
    const fs::path d = spiece_dir("nonlegacy", config);
    try {
        host::load_tokenizer(d);
        ADD_FAILURE() << "loaded a legacy: false T5Tokenizer";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find((d / "tokenizer_config.json").string() + ": \"legacy\": false"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace fthost::test
