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
    if (name == "plain") return ChatTemplate::plain;
    throw Error("unknown chat template '" + name + "' (built in: chatml, llama3, mistral, plain)", FT_ERR_CONFIG);
}

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::chatml: return "chatml";
        case ChatTemplate::llama3: return "llama3";
        case ChatTemplate::mistral: return "mistral";
        case ChatTemplate::plain: return "plain";
    }
    return "?";
}

ChatTemplate recognise_chat_template(const fs::path& dir) {
    const std::string how = "; set [stage.data] chat_template = \"chatml\", \"llama3\", \"mistral\" or \"plain\" to choose one";
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
    if (t.find("<|im_start|>") != std::string::npos && t.find("<|im_end|>") != std::string::npos) return ChatTemplate::chatml;
    if (t.find("[INST]") != std::string::npos && t.find("[/INST]") != std::string::npos) return ChatTemplate::mistral;
    throw Error(source + ": the chat template is not one fthost recognises (chatml, llama3, mistral)" + how, FT_ERR_CONFIG);
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
        case ChatTemplate::plain:
            for (const auto& m : messages) add(out, m.content + "\n", m.role == "assistant");
            break;
    }
    return out;
}

}  // namespace fthost::host
