// The chat data path of real checkpoints (host/tokenizer/text_codec.cpp): conversations
// encode to the ids and assistant (loss) mask that transformers' apply_chat_template with
// return_assistant_tokens_mask gives (tests/fixtures/chat_encodings.json,
// make_chat_checkpoint_fixtures.py), and a checkpoint directory's tokenizer files decide
// EOS, padding, stop tokens and the template.
#include "test_support.hpp"

#include "data/example.hpp"
#include "tokenizer/text_codec.hpp"

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

const fs::path kFixtures = fs::path(source_dir()) / "tests/fixtures";

// A model directory holding fixture tokenizer `name` and a tokenizer_config.json.
fs::path tokenizer_dir(const std::string& name, const json& config) {
    const fs::path d = temp_dir("codec_" + name);
    fs::copy_file(kFixtures / "tokenizers" / name / "tokenizer.json", d / "tokenizer.json",
                  fs::copy_options::overwrite_existing);
    std::ofstream(d / "tokenizer_config.json") << config.dump();
    return d;
}

std::vector<host::ChatMessage> messages_of(const json& conv) {
    std::vector<host::ChatMessage> out;
    for (const auto& m : conv) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    return out;
}

TEST(TextCodec, ChatEncodingAndAssistantMaskEqualTransformers) {
    const json j = json::parse(std::ifstream(kFixtures / "chat_encodings.json"));
    const std::map<std::string, json> configs = {
        {"qwen2", {{"eos_token", "<|im_end|>"}, {"bos_token", nullptr}}},
        {"llama3", {{"eos_token", "<|eot_id|>"}, {"bos_token", "<|begin_of_text|>"}}}};
    int checked = 0;
    for (const auto& [name, c] : j["cases"].items()) {
        const auto codec = host::TextCodec::for_model(tokenizer_dir(name, configs.at(name)), c["template"].get<std::string>());
        for (size_t i = 0; i < c["rows"].size(); ++i) {
            const auto& row = c["rows"][i];
            const auto enc = codec->encode_chat(messages_of(j["conversations"][i]), false);
            EXPECT_EQ(enc.ids, row["ids"].get<std::vector<int64_t>>()) << name << " conversation " << i;
            std::vector<int64_t> mask(enc.assistant.begin(), enc.assistant.end());
            EXPECT_EQ(mask, row["assistant"].get<std::vector<int64_t>>()) << name << " conversation " << i;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 8);
}

TEST(TextCodec, CheckpointDirectoryGivesEosPaddingStopsAndTemplate) {
    const auto codec = host::TextCodec::for_model(kFixtures / "hf/qwen2_chat", "");
    const auto im_end = codec->encode("<|im_end|>", false), eot = codec->encode("<|endoftext|>", false);
    ASSERT_EQ(im_end.size(), 1u);
    ASSERT_EQ(eot.size(), 1u);
    EXPECT_EQ(codec->eos_id(), im_end[0]);  // tokenizer_config.json eos_token
    EXPECT_EQ(codec->pad_id(), eot[0]);     // pad_token
    EXPECT_NE(std::find(codec->stop_ids().begin(), codec->stop_ids().end(), im_end[0]), codec->stop_ids().end());
    EXPECT_EQ(codec->sample_limit(), 600);  // the tokenizer's ids, not the embedding's 640 rows
    EXPECT_EQ(codec->describe(), "tokenizer.json, chat template chatml");
    EXPECT_FALSE(codec->is_bytes());
    // Saved next to a trained model: the files transformers and vLLM read.
    const fs::path out = temp_dir("codec_save");
    codec->save(out);
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"})
        EXPECT_TRUE(fs::exists(out / f)) << f;

    // A fixture checkpoint without its tokenizer is refused with what to do.
    try {
        host::TextCodec::for_model(kFixtures / "hf/qwen2_bias", "");
        FAIL() << "a checkpoint without a tokenizer was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("without its tokenizer"), std::string::npos) << e.what();
    }
    // fthost's own models (no tokenizer files) use the byte tokenizer, whose template is chatml.
    EXPECT_TRUE(host::TextCodec::for_model(temp_dir("codec_empty"), "")->is_bytes());
    EXPECT_THROW(host::TextCodec::for_model(temp_dir("codec_empty"), "llama3"), Error);
}

TEST(TextCodec, UnrecognisedTemplateFailsOnlyWhenAConversationIsRendered) {
    const json unknown = json::parse(std::ifstream(kFixtures / "chat_templates/unknown/tokenizer_config.json"));
    json config = {{"eos_token", "<|im_end|>"}, {"chat_template", unknown["chat_template"]}};
    const auto codec = host::TextCodec::for_model(tokenizer_dir("qwen2", config), "");
    EXPECT_NO_THROW(host::make_example(json{{"text", "plain text needs no template"}}, *codec, FT_LABELS_ALL, 64));
    try {
        host::make_example(json{{"messages", {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "yo"}}}}},
                           *codec, FT_LABELS_COMPLETION, 64);
        FAIL() << "rendered a conversation with an unrecognised template";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("set [stage.data] chat_template"), std::string::npos) << e.what();
    }
    // Chosen by name instead, it renders.
    const auto chosen = host::TextCodec::for_model(tokenizer_dir("qwen2", config), "chatml");
    EXPECT_NO_THROW(host::make_example(
        json{{"messages", {{{"role", "user"}, {"content", "hi"}}, {{"role", "assistant"}, {"content", "yo"}}}}}, *chosen,
        FT_LABELS_COMPLETION, 64));
}

TEST(TextCodec, RowsOfACheckpointTokenizer) {
    const auto codec = host::TextCodec::for_model(kFixtures / "hf/qwen2_chat", "");
    // SFT conversation: labels exactly on the assistant's tokens (content + <|im_end|>);
    // the eval prompt is everything before the last assistant turn.
    const json conv = {{{"role", "user"}, {"content", "query: fresh basil"}}, {{"role", "assistant"}, {"content", "produce"}}};
    const auto ex = host::make_example(json{{"messages", conv}}, *codec, FT_LABELS_COMPLETION, 256);
    const auto enc = codec->encode_chat(messages_of(conv), false);
    ASSERT_EQ(ex.ids, enc.ids);
    std::vector<int64_t> labelled;
    for (size_t i = 0; i < ex.ids.size(); ++i)
        if (ex.labels[i] != -100) labelled.push_back(ex.ids[i]);
    EXPECT_EQ(codec->decode(labelled), "produce");
    EXPECT_EQ(labelled.back(), codec->eos_id());  // <|im_end|> is this checkpoint's EOS
    EXPECT_EQ(ex.prompt_ids, codec->encode_chat(messages_of(json::array({conv[0]})), true).ids);
    EXPECT_EQ(ex.reference, "produce");
    // Text rows end with EOS; prompt/completion rows label the completion and EOS.
    const auto t = host::make_example(json{{"text", "fresh basil"}}, *codec, FT_LABELS_ALL, 64);
    EXPECT_EQ(t.ids.back(), codec->eos_id());
    const auto pc = host::make_example(json{{"prompt", "query: basil\ncategory:"}, {"completion", " produce"}}, *codec,
                                       FT_LABELS_COMPLETION, 64);
    EXPECT_EQ(static_cast<int64_t>(pc.prompt_ids.size()) + static_cast<int64_t>(codec->encode(" produce", false).size()) + 1,
              static_cast<int64_t>(pc.ids.size()));
    // Preference rows with a message prompt: the completion is what the template renders
    // after the prompt, up to the end of the assistant's turn.
    const json pair = {{"prompt", json::array({conv[0]})},
                       {"chosen", {{{"role", "assistant"}, {"content", "produce"}}}},
                       {"rejected", {{{"role", "assistant"}, {"content", "meat"}}}}};
    const auto p = host::make_example(pair, *codec, FT_LABELS_COMPLETION, 256, FT_DATA_PAIRS);
    std::vector<int64_t> chosen(p.ids.begin() + p.prompt_length, p.ids.end());
    EXPECT_EQ(chosen, codec->encode("produce<|im_end|>", false));
}

TEST(TextCodec, SentencePieceSpecialTokenStringsBecomeTheirIds) {
    const auto tok = host::load_tokenizer(kFixtures / "tokenizers/spm_bpe");
    const auto eos = tok->token_to_id("</s>");
    ASSERT_TRUE(eos.has_value());
    std::vector<int64_t> want = tok->encode("[INST] hi [/INST]", false);
    want.push_back(*eos);
    const auto b = tok->encode("ok", false);
    want.insert(want.end(), b.begin(), b.end());
    EXPECT_EQ(tok->encode("[INST] hi [/INST]</s>ok", false), want);
}

TEST(TextCodec, OffsetsOfEveryTokenizerFollowTheText) {
    const json j = json::parse(std::ifstream(kFixtures / "tokenizers/expected.json"));
    for (const auto& [name, _] : j["cases"].items()) {
        const auto tok = host::load_tokenizer(kFixtures / "tokenizers" / name);
        for (const auto& s : j["strings"]) {
            const std::string text = s.get<std::string>();
            std::vector<size_t> starts;
            const auto ids = tok->encode_with_offsets(text, starts);
            EXPECT_EQ(ids, tok->encode(text, false)) << name << ": " << text;
            ASSERT_EQ(starts.size(), ids.size());
            for (size_t i = 0; i < starts.size(); ++i) {
                EXPECT_LE(starts[i], text.size()) << name;
                if (i > 0) EXPECT_LE(starts[i - 1], starts[i]) << name << ": " << text;
            }
        }
    }
}

TEST(TextCodec, T5SpieceCheckpointGivesEosPaddingAndItsFiles) {
    // A T5 checkpoint's tokenizer files without tokenizer.json: spiece.model is read with
    // transformers' T5Tokenizer conventions (tokenizer_test.cpp), and travels with the model.
    const fs::path t5 = kFixtures / "tokenizers/t5", d = temp_dir("codec_t5");
    for (const char* f : {"spiece.model", "tokenizer_config.json", "special_tokens_map.json"})
        fs::copy_file(t5 / f, d / f, fs::copy_options::overwrite_existing);
    const auto codec = host::TextCodec::for_model(d, "");
    const json config = json::parse(std::ifstream(t5 / "tokenizer_config.json"));
    std::map<std::string, int64_t> ids;
    for (const auto& [id, t] : config["added_tokens_decoder"].items()) ids[t["content"].get<std::string>()] = std::stoll(id);
    EXPECT_EQ(codec->eos_id(), ids.at(config["eos_token"].get<std::string>()));
    EXPECT_EQ(codec->pad_id(), ids.at(config["pad_token"].get<std::string>()));
    EXPECT_EQ(codec->describe().rfind("spiece.model", 0), 0u) << codec->describe();
    const json expected = json::parse(std::ifstream(kFixtures / "tokenizers/t5_expected.json"));
    const auto strings = expected["strings"].get<std::vector<std::string>>();
    const size_t i = std::find(strings.begin(), strings.end(), "The <extra_id_0> walks in <extra_id_1> park") - strings.begin();
    ASSERT_LT(i, strings.size());
    EXPECT_EQ(codec->encode(strings[i], true), expected["cases"]["spiece"][i]["ids_special"].get<std::vector<int64_t>>());
    const fs::path out = temp_dir("codec_t5_save");
    codec->save(out);
    for (const char* f : {"spiece.model", "tokenizer_config.json", "special_tokens_map.json"})
        EXPECT_TRUE(fs::exists(out / f)) << f;
}

}  // namespace
}  // namespace fthost::test
