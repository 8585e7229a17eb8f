#include "data/example.hpp"

#include <stdexcept>

namespace fthost::host {

int64_t Example::num_labels() const {
    int64_t n = 0;
    for (int64_t l : labels) n += (l != -100);
    return n;
}

namespace {

void append(Example& ex, const std::vector<int64_t>& ids, bool label, bool completion = false) {
    for (int64_t id : ids) {
        ex.ids.push_back(id);
        ex.labels.push_back(label ? id : -100);
        ex.completion_mask.push_back(completion ? 1 : 0);
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
        append(ex, tok.encode(content), label_all || assistant, assistant);
        append(ex, {ByteTokenizer::kImEnd}, label_all || assistant, assistant);
        append(ex, tok.encode("\n"), label_all);
    }
}


void check_messages(const nlohmann::json& messages, const char* field) {
    if (!messages.is_array() || messages.empty())
        throw std::runtime_error(std::string("field '") + field + "' must be a string or a non-empty message list");
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
            !m["content"].is_string())
            throw std::runtime_error(std::string("field '") + field + "' message " + std::to_string(i) +
                                     " needs string 'role' and 'content'");
    }
}

}  // namespace

// A preference / feedback prompt: plain text, or messages rendered with ChatML and an
// open assistant turn for the completion to continue.
std::vector<int64_t> render_prompt(const nlohmann::json& prompt, const ByteTokenizer& tok) {
    if (prompt.is_string()) return tok.encode(prompt.get<std::string>());
    check_messages(prompt, "prompt");
    std::vector<int64_t> ids;
    auto add = [&](const std::vector<int64_t>& v) { ids.insert(ids.end(), v.begin(), v.end()); };
    for (const auto& m : prompt) {
        add({ByteTokenizer::kImStart});
        add(tok.encode(m["role"].get<std::string>() + "\n" + m["content"].get<std::string>()));
        add({ByteTokenizer::kImEnd});
        add(tok.encode("\n"));
    }
    add({ByteTokenizer::kImStart});
    add(tok.encode("assistant\n"));
    return ids;
}

namespace {

// A completion: text + EOS, or assistant message(s) as content + <|im_end|> (the
// tokens SFT learns for an assistant turn). Returns the tokens and the plain text.
std::pair<std::vector<int64_t>, std::string> render_completion(const nlohmann::json& c, const char* field,
                                                              const ByteTokenizer& tok) {
    if (c.is_string()) {
        auto ids = tok.encode(c.get<std::string>());
        ids.push_back(ByteTokenizer::kEos);
        return {ids, c.get<std::string>()};
    }
    check_messages(c, field);
    std::vector<int64_t> ids;
    std::string text;
    for (size_t i = 0; i < c.size(); ++i) {
        if (c[i]["role"] != "assistant")
            throw std::runtime_error(std::string("field '") + field + "' message " + std::to_string(i) +
                                     " must have role 'assistant'");
        if (i > 0) {  // later turns restart an assistant block
            for (int64_t id : tok.encode("\n")) ids.push_back(id);
            ids.push_back(ByteTokenizer::kImStart);
            for (int64_t id : tok.encode("assistant\n")) ids.push_back(id);
        }
        const std::string content = c[i]["content"].get<std::string>();
        for (int64_t id : tok.encode(content)) ids.push_back(id);
        ids.push_back(ByteTokenizer::kImEnd);
        text += content;
    }
    return {ids, text};
}

const nlohmann::json& required(const nlohmann::json& row, const char* key, const char* shape) {
    if (!row.contains(key))
        throw std::runtime_error(std::string("a ") + shape + " row needs '" + key + "' (has: " + [&] {
            std::string keys;
            for (const auto& [k, _] : row.items()) keys += (keys.empty() ? "" : ", ") + k;
            return keys;
        }() + ")");
    return row.at(key);
}

// prompt ⊕ completion, labels on the completion (or on everything after the first
// token for FT_LABELS_ALL), completion_mask on the completion.
Example prompt_completion(const std::vector<int64_t>& prompt, const std::vector<int64_t>& completion,
                          bool label_all) {
    Example ex;
    append(ex, prompt, label_all);
    ex.prompt_ids = ex.ids;
    ex.prompt_length = static_cast<int64_t>(prompt.size());
    append(ex, completion, true, true);
    return ex;
}

void finish(Example& ex, int64_t max_seq_len) {
    if (static_cast<int64_t>(ex.ids.size()) > max_seq_len) {
        ex.ids.resize(max_seq_len);
        ex.labels.resize(max_seq_len);
        ex.completion_mask.resize(max_seq_len);
    }
    // Nothing predicts the first token of an example; in a packed row the previous
    // position belongs to another example.
    if (!ex.labels.empty()) ex.labels[0] = -100;
    if (ex.num_labels() == 0)
        throw std::runtime_error("row has no tokens to learn from after truncation to max_seq_len = " +
                                 std::to_string(max_seq_len) + " (raise [stage.data] max_seq_len)");
}

Example make_pair(const nlohmann::json& row, const ByteTokenizer& tok, bool label_all, int64_t max_seq_len) {
    const auto prompt = render_prompt(required(row, "prompt", "preference"), tok);
    auto [chosen, chosen_text] = render_completion(required(row, "chosen", "preference"), "chosen", tok);
    auto [rejected, rejected_text] = render_completion(required(row, "rejected", "preference"), "rejected", tok);
    Example ex = prompt_completion(prompt, chosen, label_all);
    ex.reference = chosen_text;
    finish(ex, max_seq_len);
    Example rej = prompt_completion(prompt, rejected, label_all);
    rej.reference = rejected_text;
    finish(rej, max_seq_len);
    ex.partner.push_back(std::move(rej));
    return ex;
}

Example make_feedback(const nlohmann::json& row, const ByteTokenizer& tok, bool label_all, int64_t max_seq_len) {
    const auto prompt = render_prompt(required(row, "prompt", "feedback"), tok);
    auto [completion, text] = render_completion(required(row, "completion", "feedback"), "completion", tok);
    const auto& label = required(row, "label", "feedback");
    if (!label.is_boolean()) throw std::runtime_error("field 'label' must be true (desirable) or false (undesirable)");
    Example ex = prompt_completion(prompt, completion, label_all);
    ex.reference = text;
    ex.desirable = label.get<bool>() ? 1 : 0;
    finish(ex, max_seq_len);
    return ex;
}

}  // namespace

Example make_example(const nlohmann::json& row, const ByteTokenizer& tok, ft_label_policy policy, int64_t max_seq_len,
                     ft_data_shape shape) {
    Example ex;
    const bool label_all = policy == FT_LABELS_ALL;
    if (shape == FT_DATA_COMPLETIONS) {
        // A prompt to sample from; `completion` (when given) is the graders' reference.
        if (!row.is_object()) throw std::runtime_error("row must be a JSON object");
        const auto prompt = render_prompt(required(row, "prompt", "prompt"), tok);
        if (prompt.empty()) throw std::runtime_error("field 'prompt' is empty");
        append(ex, prompt, false);
        ex.prompt_ids = ex.ids;
        ex.prompt_length = static_cast<int64_t>(prompt.size());
        ex.prompt_text = row["prompt"].is_string() ? row["prompt"].get<std::string>() : tok.decode(prompt);
        if (row.contains("completion") && row["completion"].is_string()) ex.reference = row["completion"].get<std::string>();
        ex.row_json = row.dump();
        return ex;
    }
    if (shape == FT_DATA_PAIRS || shape == FT_DATA_FEEDBACK) {
        if (!row.is_object()) throw std::runtime_error("row must be a JSON object");
        ex = shape == FT_DATA_PAIRS ? make_pair(row, tok, label_all, max_seq_len)
                                    : make_feedback(row, tok, label_all, max_seq_len);
        ex.prompt_text = row["prompt"].is_string() ? row["prompt"].get<std::string>() : tok.decode(ex.prompt_ids);
        ex.row_json = row.dump();
        return ex;
    }
    ex.row_json = row.dump();
    if (row.contains("chosen") || row.contains("rejected"))
        throw std::runtime_error("row has 'chosen'/'rejected': a preference row needs a preference objective "
                                 "(dpo, orpo, simpo), not one that trains on single sequences");
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
        append(ex, tok.encode(ex.reference), true, true);
        append(ex, {ByteTokenizer::kEos}, true, true);
    } else if (row.contains("text")) {
        append(ex, tok.encode(string_field(row, "text")), true);
        append(ex, {ByteTokenizer::kEos}, true);
    } else {
        throw std::runtime_error("row has none of 'text', 'prompt'/'completion', 'messages'");
    }
    finish(ex, max_seq_len);
    return ex;
}

Example mismatched_example(const Example& prompt_of, const Example& completion_of, int64_t max_seq_len) {
    const auto& c = completion_of;
    const std::vector<int64_t> completion(c.ids.begin() + std::min<int64_t>(c.prompt_length, c.ids.size()), c.ids.end());
    Example ex = prompt_completion(prompt_of.prompt_ids, completion, false);
    if (completion.empty()) {  // the other completion was truncated away: nothing to score
        ex.labels.assign(ex.ids.size(), -100);
        return ex;
    }
    if (static_cast<int64_t>(ex.ids.size()) > max_seq_len) {
        ex.ids.resize(max_seq_len);
        ex.labels.resize(max_seq_len);
        ex.completion_mask.resize(max_seq_len);
    }
    if (!ex.labels.empty()) ex.labels[0] = -100;
    return ex;
}

}  // namespace fthost::host
