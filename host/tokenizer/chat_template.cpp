#include "tokenizer/chat_template.hpp"

#include "io/atomic_file.hpp"

#include <fthost/plugin.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

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

// Python's str.lstrip / rstrip of one character.
std::string lstrip(const std::string& s, char c) { return s.substr(std::min(s.find_first_not_of(c), s.size())); }
std::string rstrip(const std::string& s, char c) {
    const size_t e = s.find_last_not_of(c);
    return e == std::string::npos ? "" : s.substr(0, e + 1);
}
bool wraps(const std::string& s, const std::string& open, const std::string& close) {
    return s.size() >= open.size() + close.size() && s.compare(0, open.size(), open) == 0 &&
           s.compare(s.size() - close.size(), close.size(), close) == 0;
}

// Qwen3's template (without tools): ChatML in which the assistant turns after the last
// user query carry their reasoning as <think>...</think> (empty in the final turn when
// there is none), and earlier turns lose it. Reasoning comes from the content, as the
// template reads it: before the last </think>, after the last <think>.
void render_qwen3(std::vector<ChatSegment>& out, const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
    const size_t n = messages.size();
    if (n && messages[0].role == "system") add(out, "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n", false);
    size_t last_query = n ? n - 1 : 0;
    for (size_t i = n; i-- > 0;)
        if (messages[i].role == "user" && !wraps(messages[i].content, "<tool_response>", "</tool_response>")) {
            last_query = i;
            break;
        }
    for (size_t i = 0; i < n; ++i) {
        const auto& m = messages[i];
        if (m.role == "user" || (m.role == "system" && i != 0)) {
            add(out, "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n", false);
        } else if (m.role == "assistant") {
            std::string content = m.content, reasoning;
            if (const size_t close = content.find("</think>"); close != std::string::npos) {
                reasoning = rstrip(content.substr(0, close), '\n');
                if (const size_t open = reasoning.rfind("<think>"); open != std::string::npos)
                    reasoning = reasoning.substr(open + 7);
                reasoning = lstrip(reasoning, '\n');
                content = lstrip(content.substr(content.rfind("</think>") + 8), '\n');
            }
            add(out, "<|im_start|>assistant\n", false);
            if (i > last_query && (i + 1 == n || !reasoning.empty()))
                add(out, "<think>\n" + rstrip(lstrip(reasoning, '\n'), '\n') + "\n</think>\n\n" + lstrip(content, '\n'), true);
            else
                add(out, content, true);
            add(out, "<|im_end|>", true);
            add(out, "\n", false);
        } else if (m.role == "tool") {
            if (i == 0 || messages[i - 1].role != "tool") add(out, "<|im_start|>user", false);
            add(out, "\n<tool_response>\n" + m.content + "\n</tool_response>", false);
            if (i + 1 == n || messages[i + 1].role != "tool") add(out, "<|im_end|>\n", false);
        }
    }
    if (add_generation_prompt) add(out, "<|im_start|>assistant\n", false);
}

void check_alternation(const std::vector<ChatMessage>& messages, size_t from, const char* name) {
    for (size_t i = from; i < messages.size(); ++i)
        if ((messages[i].role == "user") != ((i - from) % 2 == 0))
            throw Error(std::string("the ") + name + " chat template needs turns alternating user/assistant/user/..., " +
                            "starting with user (message " + std::to_string(i) + " is '" + messages[i].role + "')",
                        FT_ERR_INVALID_ARGUMENT);
}

// Gemma 3's template: Gemma 2's turns, with a system message's content and a blank line
// put at the start of the first user turn.
void render_gemma3(std::vector<ChatSegment>& out, const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                   const std::string& bos) {
    add(out, bos, false);
    const bool system = !messages.empty() && messages[0].role == "system";
    const std::string prefix = system ? messages[0].content + "\n\n" : "";
    const size_t from = system ? 1 : 0;
    check_alternation(messages, from, "gemma3");
    for (size_t i = from; i < messages.size(); ++i) {
        const auto& m = messages[i];
        const bool a = m.role == "assistant";
        add(out, "<start_of_turn>" + std::string(a ? "model" : m.role) + "\n" + (i == from ? prefix : ""), false);
        add(out, trim(m.content) + "<end_of_turn>", a);
        add(out, "\n", false);
    }
    if (add_generation_prompt) add(out, "<start_of_turn>model\n", false);
}

// Qwen3's template by its parts: the reasoning rules, and a generation prompt that opens
// no <think> block unless enable_thinking is false (other reasoning templates differ).
bool is_qwen3(const std::string& t) {
    std::string squeezed;
    for (char c : t)
        if (!std::isspace(static_cast<unsigned char>(c))) squeezed += c;
    return squeezed.find("ns.last_query_index") != std::string::npos &&
           squeezed.find("reasoning_content.strip('\\n')") != std::string::npos &&
           squeezed.find("{%-ifenable_thinkingisdefinedandenable_thinkingisfalse%}{{-'<think>\\n\\n</think>\\n\\n'}}"
                         "{%-endif%}{%-endif%}") != std::string::npos;
}

}  // namespace

ChatTemplate chat_template_from_name(const std::string& name) {
    if (name == "chatml") return ChatTemplate::chatml;
    if (name == "llama3") return ChatTemplate::llama3;
    if (name == "mistral") return ChatTemplate::mistral;
    if (name == "gemma") return ChatTemplate::gemma;
    if (name == "gemma3") return ChatTemplate::gemma3;
    if (name == "qwen3") return ChatTemplate::qwen3;
    if (name == "phi3") return ChatTemplate::phi3;
    if (name == "plain") return ChatTemplate::plain;
    throw Error("unknown chat template '" + name + "' (built in: chatml, qwen3, llama3, mistral, gemma, gemma3, phi3, plain)",
                FT_ERR_CONFIG);
}

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::chatml: return "chatml";
        case ChatTemplate::llama3: return "llama3";
        case ChatTemplate::mistral: return "mistral";
        case ChatTemplate::gemma: return "gemma";
        case ChatTemplate::gemma3: return "gemma3";
        case ChatTemplate::qwen3: return "qwen3";
        case ChatTemplate::phi3: return "phi3";
        case ChatTemplate::plain: return "plain";
    }
    return "?";
}

ChatTemplate recognise_chat_template(const fs::path& dir) {
    const std::string how =
        "; set [stage.data] chat_template = \"chatml\", \"qwen3\", \"llama3\", \"mistral\", \"gemma\", \"gemma3\", "
        "\"phi3\" or \"plain\" to choose one";
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
    // Reasoning templates are ChatML with <think> blocks placed by rules of their own:
    // rendering another one as Qwen3's or as plain ChatML would train on other text.
    if (has("<think>") && has("<|im_start|>") && is_qwen3(t)) return ChatTemplate::qwen3;
    if (has("<think>"))
        throw Error(source + ": a reasoning chat template (<think> blocks) other than Qwen3's is not built" + how,
                    FT_ERR_CONFIG);
    if (has("<|im_start|>") && has("<|im_end|>")) return ChatTemplate::chatml;
    if (has("[INST]") && has("[/INST]")) return ChatTemplate::mistral;
    if (has("<start_of_turn>") && has("<end_of_turn>"))
        return has("first_user_prefix") ? ChatTemplate::gemma3 : ChatTemplate::gemma;
    if (has("<|user|>") && has("<|assistant|>") && has("<|end|>")) return ChatTemplate::phi3;
    throw Error(source + ": the chat template is not one fthost recognises (chatml, qwen3, llama3, mistral, gemma, gemma3, phi3)" + how,
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
        case ChatTemplate::qwen3: render_qwen3(out, messages, add_generation_prompt); break;
        case ChatTemplate::gemma3: render_gemma3(out, messages, add_generation_prompt, bos); break;
        case ChatTemplate::gemma:
            // Gemma 2's template: user and model alternate from user, contents trimmed;
            // it refuses a system turn (gemma3 folds one into the first user turn).
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
