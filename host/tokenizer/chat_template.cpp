#include "tokenizer/chat_template.hpp"

#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace fthost::host {
namespace {

// Jinja's `trim`: Python's str.strip() — leading and trailing whitespace.
std::string trim(const std::string& s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

void add(std::vector<ChatSegment>& out, const std::string& text, bool assistant) {
    if (text.empty()) return;
    if (!out.empty() && out.back().assistant == assistant) out.back().text += text;
    else out.push_back({text, assistant});
}

}  // namespace

ChatTemplate chat_template_from_name(const std::string& name) {
    if (name == "chatml") return ChatTemplate::chatml;
    if (name == "llama3") return ChatTemplate::llama3;
    if (name == "mistral") return ChatTemplate::mistral;
    if (name == "gemma") return ChatTemplate::gemma;
    if (name == "phi3") return ChatTemplate::phi3;
    if (name == "plain") return ChatTemplate::plain;
    throw Error("unknown chat template '" + name + "' (built in: chatml, llama3, mistral, gemma, phi3, plain)", FT_ERR_CONFIG);
}

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::chatml: return "chatml";
        case ChatTemplate::llama3: return "llama3";
        case ChatTemplate::mistral: return "mistral";
        case ChatTemplate::gemma: return "gemma";
        case ChatTemplate::phi3: return "phi3";
        case ChatTemplate::plain: return "plain";
    }
    return "?";
}

ChatTemplate recognise_chat_template(const fs::path& dir) {
    const std::string how =
        "; set [stage.data] chat_template = \"chatml\", \"llama3\", \"mistral\", \"gemma\", \"phi3\" or \"plain\" to "
        "choose one";
    // transformers >= 4.43 saves the template as chat_template.jinja; older files keep it
    // in tokenizer_config.json, as a string or as a list of named templates.
    std::string t, source;
    if (fs::exists(dir / "chat_template.jinja")) {
        source = (dir / "chat_template.jinja").string();
        t = read_text(dir / "chat_template.jinja");
    } else {
        source = (dir / "tokenizer_config.json").string();
        if (!fs::exists(dir / "tokenizer_config.json"))
            throw Error(dir.string() + " has neither chat_template.jinja nor tokenizer_config.json" + how, FT_ERR_CONFIG);
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(read_text(dir / "tokenizer_config.json"));
        } catch (const nlohmann::json::exception& e) {
            throw Error(source + ": not valid JSON (" + e.what() + ")", FT_ERR_INVALID_ARGUMENT);
        }
        if (!j.is_object()) throw Error(source + ": not a JSON object", FT_ERR_INVALID_ARGUMENT);
        const nlohmann::json ct = j.value("chat_template", nlohmann::json());
        if (ct.is_string()) t = ct.get<std::string>();
        else if (ct.is_array())
            for (const auto& named : ct)
                if (named.is_object() && named.contains("name") && named["name"] == "default" && named.contains("template") &&
                    named["template"].is_string())
                    t = named["template"].get<std::string>();
        if (t.empty()) throw Error(source + ": no chat_template" + how, FT_ERR_CONFIG);
    }
    if (t.find("<|start_header_id|>") != std::string::npos && t.find("<|eot_id|>") != std::string::npos)
        return ChatTemplate::llama3;
    const auto has = [&](const char* marker) { return t.find(marker) != std::string::npos; };
    // Qwen3's is ChatML with reasoning blocks (an empty <think></think> in the last
    // assistant turn): rendering it as plain ChatML would train on other text.
    if (has("<think>"))
        throw Error(source + ": a reasoning chat template (<think> blocks, Qwen3's) is not built" + how, FT_ERR_CONFIG);
    if (has("<|im_start|>") && has("<|im_end|>")) return ChatTemplate::chatml;
    if (has("[INST]") && has("[/INST]")) return ChatTemplate::mistral;
    if (has("<start_of_turn>") && has("<end_of_turn>")) return ChatTemplate::gemma;
    if (has("<|user|>") && has("<|assistant|>") && has("<|end|>")) return ChatTemplate::phi3;
    throw Error(source + ": the chat template is not one fthost recognises (chatml, llama3, mistral, gemma, phi3)" + how,
                FT_ERR_CONFIG);
}

std::vector<ChatSegment> render_chat(ChatTemplate t, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                     const std::string& bos, const std::string& eos) {
    std::vector<ChatSegment> out;
    switch (t) {
        case ChatTemplate::chatml:
            for (const auto& m : messages) {
                const bool a = m.role == "assistant";
                add(out, "<|im_start|>" + m.role + "\n", false);
                add(out, m.content + "<|im_end|>", a);
                add(out, "\n", false);
            }
            if (add_generation_prompt) add(out, "<|im_start|>assistant\n", false);
            break;
        case ChatTemplate::llama3:
            for (size_t i = 0; i < messages.size(); ++i) {
                const auto& m = messages[i];
                add(out, (i == 0 ? bos : "") + "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n", false);
                add(out, trim(m.content) + "<|eot_id|>", m.role == "assistant");
            }
            if (add_generation_prompt) add(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", false);
            break;
        case ChatTemplate::mistral: {
            // v0.1/0.2: user and assistant alternate, starting with user; a system message
            // is not part of the format.
            add(out, bos, false);
            for (size_t i = 0; i < messages.size(); ++i) {
                const auto& m = messages[i];
                if ((m.role == "user") != (i % 2 == 0))
                    throw Error("the mistral chat template needs turns alternating user/assistant/user/..., starting "
                                "with user (message " + std::to_string(i) + " is '" + m.role + "')",
                                FT_ERR_INVALID_ARGUMENT);
                if (m.role == "user") add(out, "[INST] " + m.content + " [/INST]", false);
                else add(out, m.content + eos, true);
            }
            break;
        }
        case ChatTemplate::gemma:
            // Gemma 2's template: user and model alternate from user, contents trimmed;
            // it refuses a system turn (Gemma 3's folds one into the first user turn: not built).
            add(out, bos, false);
            for (size_t i = 0; i < messages.size(); ++i) {
                const auto& m = messages[i];
                if (m.role == "system")
                    throw Error("the gemma chat template has no system turn (message " + std::to_string(i) + ")",
                                FT_ERR_INVALID_ARGUMENT);
                if ((m.role == "user") != (i % 2 == 0))
                    throw Error("the gemma chat template needs turns alternating user/assistant/user/..., starting "
                                "with user (message " + std::to_string(i) + " is '" + m.role + "')",
                                FT_ERR_INVALID_ARGUMENT);
                const bool a = m.role == "assistant";
                add(out, "<start_of_turn>" + std::string(a ? "model" : m.role) + "\n", false);
                add(out, trim(m.content) + "<end_of_turn>", a);
                add(out, "\n", false);
            }
            if (add_generation_prompt) add(out, "<start_of_turn>model\n", false);
            break;
        case ChatTemplate::phi3:
            // Phi-3-mini-4k-instruct's: the end-of-text token closes a conversation given
            // without a generation prompt.
            for (const auto& m : messages) {
                if (m.role != "system" && m.role != "user" && m.role != "assistant") continue;  // as the template skips them
                const bool a = m.role == "assistant";
                add(out, "<|" + m.role + "|>\n", false);
                add(out, m.content + "<|end|>", a);
                add(out, "\n", false);
            }
            add(out, add_generation_prompt ? "<|assistant|>\n" : eos, false);
            break;
        case ChatTemplate::plain:
            for (const auto& m : messages) add(out, m.content + "\n", m.role == "assistant");
            break;
    }
    return out;
}

}  // namespace fthost::host
