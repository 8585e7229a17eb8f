// Built-in chat templates (host/tokenizer/chat_template.cpp) against transformers'
// rendering of each family's published Jinja template (tests/fixtures/chat_templates/,
// make_chat_template_fixtures.py): the same text for every conversation, with and
// without the generation prompt; the assistant segments are exactly the assistant turns
// (plus their end marker; Qwen3's with the reasoning block its template writes); templates are recognised from tokenizer_config.json, and an
// unknown one is an error telling the user how to choose.
#include "test_support.hpp"

#include "tokenizer/chat_template.hpp"

#include <fstream>

namespace fthost::test {
namespace {

using nlohmann::json;

const fs::path kDir = fs::path(source_dir()) / "tests/fixtures/chat_templates";

std::vector<host::ChatMessage> messages_of(const json& conv) {
    std::vector<host::ChatMessage> out;
    for (const auto& m : conv) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    return out;
}

// What the assistant wrote in transformers' rendering `text`: from after each
// "<|im_start|>assistant\n" through its "<|im_end|>" (Qwen3's turns, whose reasoning block
// the template adds or drops).
std::string im_assistant_turns(const std::string& text) {
    std::string out;
    const std::string open = "<|im_start|>assistant\n", close = "<|im_end|>";
    for (size_t at = text.find(open); at != std::string::npos; at = text.find(open, at)) {
        at += open.size();
        const size_t end = text.find(close, at);
        if (end == std::string::npos) break;  // the generation prompt
        out += text.substr(at, end + close.size() - at);
    }
    return out;
}

// An assistant turn's content as the template writes it, with the end-of-turn marker.
std::string rendered_turn(const std::string& name, std::string content, const std::string& eos) {
    if (name == "chatml") return content + "<|im_end|>";
    if (name == "mistral") return content + eos;
    if (name == "phi3") return content + "<|end|>";
    if (name == "plain") return content + "\n";
    const char* ws = " \t\n\r\f\v";  // llama3, gemma and gemma3: Jinja's trim
    content.erase(0, content.find_first_not_of(ws));
    content.erase(content.find_last_not_of(ws) + 1);
    return content + (name == "gemma" || name == "gemma3" ? "<end_of_turn>" : "<|eot_id|>");
}

TEST(ChatTemplate, RendersAsTransformersDoes) {
    const json all = json::parse(std::ifstream(kDir / "expected.json"));
    int checked = 0;
    for (const auto& [name, spec] : all["rendered"].items()) {
        const auto t = host::chat_template_from_name(name);
        const std::string bos = spec["bos"].is_null() ? "" : spec["bos"].get<std::string>(), eos = spec["eos"];
        for (size_t i = 0; i < all["conversations"].size(); ++i) {
            const auto msgs = messages_of(all["conversations"][i]);
            for (const bool gen : {false, true}) {
                const json& want = spec["rows"][i][gen ? "true" : "false"];
                if (want.is_null()) {  // the family's template refuses this conversation
                    EXPECT_THROW(host::render_chat(t, msgs, gen, bos, eos), Error) << name << " conversation " << i;
                    continue;
                }
                std::string text, assistant;
                for (const auto& seg : host::render_chat(t, msgs, gen, bos, eos)) {
                    text += seg.text;
                    if (seg.assistant) assistant += seg.text;
                }
                EXPECT_EQ(text, want.get<std::string>()) << name << " conversation " << i << (gen ? " + prompt" : "");
                // What is marked: each assistant turn as rendered, with its end-of-turn marker.
                std::string turns;
                for (const auto& m : msgs)
                    if (m.role == "assistant" && name != "qwen3") turns += rendered_turn(name, m.content, eos);
                if (name == "qwen3") turns = im_assistant_turns(want.get<std::string>());
                EXPECT_EQ(assistant, turns) << name << " conversation " << i;
                ++checked;
            }
        }
    }
    EXPECT_EQ(checked, 7 * 6 * 2 - 8);  // mistral and gemma refuse the two system-message conversations
}

TEST(ChatTemplate, PlainIsContentsOnePerLine) {
    const auto segs = host::render_chat(host::ChatTemplate::plain, {{"user", "q"}, {"assistant", "a"}}, false, "", "");
    ASSERT_EQ(segs.size(), 2u);
    EXPECT_EQ(segs[0].text, "q\n");
    EXPECT_FALSE(segs[0].assistant);
    EXPECT_EQ(segs[1].text, rendered_turn("plain", "a", ""));
    EXPECT_TRUE(segs[1].assistant);
}

TEST(ChatTemplate, RecognisedFromTokenizerConfig) {
    EXPECT_EQ(host::recognise_chat_template(kDir / "chatml"), host::ChatTemplate::chatml);
    EXPECT_EQ(host::recognise_chat_template(kDir / "llama3"), host::ChatTemplate::llama3);
    EXPECT_EQ(host::recognise_chat_template(kDir / "mistral"), host::ChatTemplate::mistral);
    EXPECT_EQ(host::recognise_chat_template(kDir / "gemma"), host::ChatTemplate::gemma);
    EXPECT_EQ(host::recognise_chat_template(kDir / "phi3"), host::ChatTemplate::phi3);
    try {
        host::recognise_chat_template(kDir / "unknown");
        FAIL() << "recognised an unknown template as one of ours";
    } catch (const Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("unknown/tokenizer_config.json: the chat template is not one fthost recognises"), std::string::npos)
            << m;
        EXPECT_NE(m.find("set [stage.data] chat_template"), std::string::npos) << m;
    }
    EXPECT_THROW(host::chat_template_from_name("vicuna"), Error);
    EXPECT_EQ(host::recognise_chat_template(kDir / "qwen3"), host::ChatTemplate::qwen3);
    EXPECT_EQ(host::recognise_chat_template(kDir / "gemma3"), host::ChatTemplate::gemma3);
    // Another reasoning template (QwQ-style: <think> opened by the generation prompt) is
    // refused, not rendered as Qwen3's or as plain ChatML.
    const fs::path reasoning = temp_dir("chat-reasoning");
    write_file(reasoning / "tokenizer_config.json",
               R"({"chat_template": "{{'<|im_start|>' + m.role }}{{ m.content + '<|im_end|>' }}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"})");
    try {
        host::recognise_chat_template(reasoning);
        FAIL() << "rendered another reasoning template as Qwen3's or ChatML";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("a reasoning chat template (<think> blocks) other than Qwen3's is not built"),
                  std::string::npos) << e.what();
    }
    // transformers >= 4.43 writes the template to chat_template.jinja instead.
    EXPECT_EQ(host::recognise_chat_template(fs::path(source_dir()) / "tests/fixtures/hf/qwen2_chat"),
              host::ChatTemplate::chatml);
    EXPECT_EQ(host::chat_template_from_name("plain"), host::ChatTemplate::plain);
}

// Found by tests/fuzz/fuzz_chat_template (corpus/chat_template/regress-config-*): a
// tokenizer_config.json that is JSON but not an object, or a named template whose name is
// not a string, escaped as nlohmann's type_error (no file named, and past TextCodec's
// "no template until one is needed" handling) instead of fthost::Error.
TEST(ChatTemplate, MalformedTokenizerConfigIsAnErrorNamingTheFile) {
    const fs::path dir = temp_dir("chat-config");
    for (const char* text : {"8", "[]", "\"x\"", "null"}) {
        write_file(dir / "tokenizer_config.json", text);
        try {
            host::recognise_chat_template(dir);
            FAIL() << text;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("tokenizer_config.json: not a JSON object"), std::string::npos) << e.what();
        }
    }
    write_file(dir / "tokenizer_config.json",
               R"({"chat_template": [{"name": 5, "template": "x"}, {"name": "default", "template": "<|im_start|><|im_end|>"}]})");
    EXPECT_EQ(host::recognise_chat_template(dir), host::ChatTemplate::chatml);
}

}  // namespace
}  // namespace fthost::test
