#include "data/example.hpp"

#include <stdexcept>

namespace fthost::host {

int64_t Example::num_labels() const {
    int64_t n = 0;
    for (int64_t l : labels) n += (l != -100);
    return n;
}

namespace {

void append(Example& ex, const std::vector<int64_t>& ids, bool label) {
    for (int64_t id : ids) {
        ex.ids.push_back(id);
        ex.labels.push_back(label ? id : -100);
    }
}

const std::string& string_field(const nlohmann::json& row, const char* key) {
    const auto& v = row.at(key);
    if (!v.is_string()) throw std::runtime_error(std::string("field '") + key + "' must be a string");
    return v.get_ref<const std::string&>();
}

// ChatML: <|im_start|>role\ncontent<|im_end|>\n
void render_chatml(Example& ex, const nlohmann::json& messages, const ByteTokenizer& tok, bool label_all) {
    if (!messages.is_array() || messages.empty()) throw std::runtime_error("field 'messages' must be a non-empty array");
    size_t last_assistant = messages.size();
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
            !m["content"].is_string())
            throw std::runtime_error("message " + std::to_string(i) + " needs string 'role' and 'content'");
        if (m["role"] == "assistant") last_assistant = i;
    }
    if (last_assistant == messages.size()) throw std::runtime_error("'messages' has no assistant turn to learn from");
    for (size_t i = 0; i < messages.size(); ++i) {
        const std::string role = messages[i]["role"].get<std::string>();
        const std::string content = messages[i]["content"].get<std::string>();
        const bool assistant = role == "assistant";
        append(ex, {ByteTokenizer::kImStart}, label_all);
        append(ex, tok.encode(role + "\n"), label_all);
        if (i == last_assistant) {
            ex.prompt_ids = ex.ids;
            ex.reference = content;
        }
        append(ex, tok.encode(content), label_all || assistant);
        append(ex, {ByteTokenizer::kImEnd}, label_all || assistant);
        append(ex, tok.encode("\n"), label_all);
    }
}

}  // namespace

Example make_example(const nlohmann::json& row, const ByteTokenizer& tok, ft_label_policy policy, int64_t max_seq_len) {
    Example ex;
    ex.row_json = row.dump();
    const bool label_all = policy == FT_LABELS_ALL;
    if (row.contains("messages")) {
        render_chatml(ex, row["messages"], tok, label_all);
        ex.prompt_text = tok.decode(ex.prompt_ids);
    } else if (row.contains("prompt") || row.contains("completion")) {
        if (!row.contains("prompt") || !row.contains("completion"))
            throw std::runtime_error("a prompt/completion row needs both 'prompt' and 'completion'");
        ex.prompt_text = string_field(row, "prompt");
        ex.reference = string_field(row, "completion");
        append(ex, tok.encode(ex.prompt_text), label_all);
        ex.prompt_ids = ex.ids;
        append(ex, tok.encode(ex.reference), true);
        append(ex, {ByteTokenizer::kEos}, true);
    } else if (row.contains("text")) {
        append(ex, tok.encode(string_field(row, "text")), true);
        append(ex, {ByteTokenizer::kEos}, true);
    } else {
        throw std::runtime_error("row has none of 'text', 'prompt'/'completion', 'messages'");
    }
    if (static_cast<int64_t>(ex.ids.size()) > max_seq_len) {
        ex.ids.resize(max_seq_len);
        ex.labels.resize(max_seq_len);
    }
    // Nothing predicts the first token of an example; in a packed row the previous
    // position belongs to another example.
    if (!ex.labels.empty()) ex.labels[0] = -100;
    if (ex.num_labels() == 0) throw std::runtime_error("row has no tokens to learn from after truncation to max_seq_len = " + std::to_string(max_seq_len) + " (raise [stage.data] max_seq_len)");
    return ex;
}

}  // namespace fthost::host
