// fuzz_chat_template — conversations through the chat templates (tokenizer/chat_template.*)
// and TextCodec::encode_chat, which renders them, encodes the text once and finds the
// assistant's tokens by offset (what SFT labels), for each built-in template on the
// tokenizers it meets in practice: the byte tokenizer (chatml), a byte-level BPE
// tokenizer.json (Qwen2's fixture: chatml as recognised from chat_template.jinja, and
// llama3, mistral, plain by name), Llama 3's fixture with its BOS (llama3), a
// SentencePiece model (mistral), and the family checkpoints' own tokenizers and templates
// (tests/fixtures/hf/chat_*: Qwen3's reasoning template, Gemma 2 and 3 and Mistral over
// SentencePiece BPE tokenizer.json files, Phi-3's turn markers that take the whitespace
// after them). Also recognise_chat_template on a fuzzed tokenizer_config.json or
// chat_template.jinja.
//
// Input: byte 0 picks the codec (0xFE / 0xFF: the rest is a chat_template.jinja /
// tokenizer_config.json to recognise), byte 1 bit 0 asks for the generation prompt; the
// rest is messages separated by 0x1E, each a role byte (system, user, assistant, tool, or
// a custom role: the text up to the first ':') and its content.
// Invariants: one assistant flag per id; a conversation with an assistant turn has at
// least one assistant token (its end-of-turn marker at least); render_chat's segments
// alternate (no two neighbours with the same flag).
#include "fuzz_support.hpp"

#include "tokenizer/chat_template.hpp"
#include "tokenizer/text_codec.hpp"

#include <nlohmann/json.hpp>

using namespace fthost;
using host::ChatMessage;
using host::TextCodec;

namespace {

struct Codec {
    std::shared_ptr<const TextCodec> codec;
};

fuzz::fs::path copy_with_config(const std::string& name, const fuzz::fs::path& tokenizer, const std::string& config) {
    const fuzz::fs::path dir = fuzz::scratch() / name;
    fuzz::fs::create_directories(dir);
    fuzz::fs::copy_file(tokenizer, dir / tokenizer.filename(), fuzz::fs::copy_options::overwrite_existing);
    fuzz::write_file(dir / "tokenizer_config.json", config);
    return dir;
}

const std::vector<std::shared_ptr<const TextCodec>>& codecs() {
    static const std::vector<std::shared_ptr<const TextCodec>> all = [] {
        const fuzz::fs::path src = FTHOST_SOURCE_DIR;
        const auto qwen = src / "tests/fixtures/hf/qwen2_chat";
        const auto llama3 = copy_with_config("llama3", src / "tests/fixtures/tokenizers/llama3/tokenizer.json",
                                             R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})");
        const auto spm = copy_with_config("spm", src / "tests/fixtures/tokenizers/spm_bpe/tokenizer.model",
                                          R"({"bos_token": "<s>", "eos_token": "</s>"})");
        return std::vector<std::shared_ptr<const TextCodec>>{
            TextCodec::bytes(),
            TextCodec::for_model(qwen, ""),
            TextCodec::for_model(qwen, "llama3"),
            TextCodec::for_model(qwen, "mistral"),
            TextCodec::for_model(qwen, "plain"),
            TextCodec::for_model(llama3, "llama3"),
            TextCodec::for_model(spm, "mistral"),
            TextCodec::for_model(spm, "chatml"),
            TextCodec::for_model(src / "tests/fixtures/hf/chat_qwen3", ""),
            TextCodec::for_model(src / "tests/fixtures/hf/chat_gemma2", ""),
            TextCodec::for_model(src / "tests/fixtures/hf/chat_gemma3", ""),
            TextCodec::for_model(src / "tests/fixtures/hf/chat_phi3", ""),
            TextCodec::for_model(src / "tests/fixtures/hf/chat_mistral", ""),
        };
    }();
    return all;
}

std::vector<ChatMessage> parse(const std::string& s) {
    static const char* roles[] = {"system", "user", "assistant", "tool"};
    std::vector<ChatMessage> out;
    size_t start = 0;
    while (start < s.size()) {
        size_t end = s.find('\x1e', start);
        if (end == std::string::npos) end = s.size();
        const std::string m = s.substr(start, end - start);
        start = end + 1;
        if (m.empty()) continue;
        const unsigned r = static_cast<unsigned char>(m[0]) % 5;
        std::string content = m.substr(1), role;
        if (r < 4) {
            role = roles[r];
        } else {
            const size_t colon = content.find(':');
            role = content.substr(0, colon);
            content = colon == std::string::npos ? "" : content.substr(colon + 1);
        }
        out.push_back({role, content});
    }
    return out;
}

}  // namespace

// Loads what the target uses before fuzzing starts, so that libFuzzer counts the
// coverage of the plugin libraries it opens.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)codecs();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const auto& all = codecs();
    if (data[0] >= 0xFE) {
        const fuzz::fs::path dir = fuzz::scratch() / "recognise";
        std::error_code ec;
        fuzz::fs::remove_all(dir, ec);
        fuzz::fs::create_directories(dir);
        fuzz::write_file(dir / (data[0] == 0xFE ? "chat_template.jinja" : "tokenizer_config.json"),
                         std::string(reinterpret_cast<const char*>(data + 1), size - 1));
        fuzz::expect_only_errors("recognise_chat_template", [&] { (void)host::recognise_chat_template(dir); });
        return 0;
    }
    const TextCodec& codec = *all[data[0] % all.size()];
    const bool generation_prompt = data[1] & 1;
    const auto messages = parse(std::string(reinterpret_cast<const char*>(data + 2), size - 2));
    bool has_assistant = false;
    for (const auto& m : messages) has_assistant |= m.role == "assistant";
    fuzz::expect_only_errors("render", [&] {
        const auto segments = codec.render(messages, generation_prompt);
        for (size_t i = 1; i < segments.size(); ++i) FTHOST_FUZZ_CHECK(segments[i].assistant != segments[i - 1].assistant);
        for (const auto& s : segments) FTHOST_FUZZ_CHECK(!s.text.empty());
    });
    fuzz::expect_only_errors("encode_chat", [&] {
        const auto chat = codec.encode_chat(messages, generation_prompt);
        FTHOST_FUZZ_CHECK(chat.assistant.size() == chat.ids.size());
        size_t marked = 0;
        for (auto f : chat.assistant) marked += f;
        if (std::getenv("FTHOST_FUZZ_VERBOSE")) {  // what a finding looked like
            for (const auto& s : codec.render(messages, generation_prompt))
                std::fprintf(stderr, "segment%s: %s\n", s.assistant ? " (assistant)" : "",
                             nlohmann::json(s.text).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace).c_str());
            for (size_t i = 0; i < chat.ids.size(); ++i)
                std::fprintf(stderr, "token %lld %s%s\n", static_cast<long long>(chat.ids[i]),
                             nlohmann::json(codec.decode({chat.ids[i]})).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace).c_str(),
                             chat.assistant[i] ? " (assistant)" : "");
        }
        if (has_assistant) FTHOST_FUZZ_CHECK(marked > 0);
        (void)codec.decode(chat.ids);
    });
    return 0;
}
