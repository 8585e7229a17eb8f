// chat_template.hpp — conversations as the text a chat model was trained on, with the
// parts the assistant wrote marked (they carry the loss in SFT). Built in: chatml
// (Qwen2, SmolLM), qwen3 (Qwen3's reasoning ChatML, without tools), llama3 (Llama 3.0's),
// mistral (Mistral-7B-Instruct v0.1/0.2's [INST] format), gemma (Gemma 2's turns, no
// system turn), gemma3 (Gemma 3's: a system turn folded into the first user turn), phi3
// (Phi-3-mini's) and plain (contents one per line, no markup). Each renders exactly as
// the Jinja template of that family does through transformers' apply_chat_template
// (tests/unit/chat_template_test.cpp). fthost does not run Jinja: a tokenizer_config.json
// template is recognised by its markers, and anything else is an error saying how to
// choose one.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace fthost::host {

struct ChatMessage {
    std::string role;  // system, user, assistant
    std::string content;
};

// One run of rendered text; `assistant` marks what the model is trained to produce
// (an assistant turn's content and its end-of-turn marker).
struct ChatSegment {
    std::string text;
    bool assistant = false;
};

enum class ChatTemplate { chatml, qwen3, llama3, mistral, gemma, gemma3, phi3, plain };

// "chatml", "qwen3", "llama3", "mistral", "gemma", "gemma3", "phi3", "plain"; anything else
// is an error listing them.
ChatTemplate chat_template_from_name(const std::string& name);
const char* chat_template_name(ChatTemplate t);

// The template a model directory's chat_template.jinja or tokenizer_config.json
// "chat_template" is (by its markers), or an error naming the file and telling the user
// to set [stage.data] chat_template.
ChatTemplate recognise_chat_template(const std::filesystem::path& model_dir);

// bos/eos: the tokenizer's special-token strings (llama3 and mistral put them in text).
std::vector<ChatSegment> render_chat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt, const std::string& bos, const std::string& eos);

}  // namespace fthost::host
