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

// A message list as ChatMessages; `field` names it in errors.
std::vector<ChatMessage> parse_messages(const nlohmann::json& messages, const char* field) {
    if (!messages.is_array() || messages.empty())
        throw std::runtime_error(std::string("field '") + field + "' must be " +
                                 (std::string(field) == "messages" ? "a non-empty array" : "a string or a non-empty message list"));
    std::vector<ChatMessage> out;
    for (size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
            !m["content"].is_string())
            throw std::runtime_error(std::string(field) == "messages"
                                         ? "message " + std::to_string(i) + " needs string 'role' and 'content'"
                                         : std::string("field '") + field + "' message " + std::to_string(i) +
                                               " needs string 'role' and 'content'");
        out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    }
    return out;
}

// An SFT conversation, encoded whole with the chat template; labels on the assistant's
// tokens (content and end of turn) or on all of them for FT_LABELS_ALL. The prompt for
// generation-based eval is everything before the last assistant turn.
void render_conversation(Example& ex, const nlohmann::json& messages, const TextCodec& codec, bool label_all) {
    const auto msgs = parse_messages(messages, "messages");
    size_t last_assistant = msgs.size();
    for (size_t i = 0; i < msgs.size(); ++i)
        if (msgs[i].role == "assistant") last_assistant = i;
    if (last_assistant == msgs.size()) throw std::runtime_error("'messages' has no assistant turn to learn from");
    const EncodedChat chat = codec.encode_chat(msgs, false);
    size_t prompt_end = chat.ids.size();
    while (prompt_end > 0 && !chat.assistant[prompt_end - 1]) --prompt_end;
    while (prompt_end > 0 && chat.assistant[prompt_end - 1]) --prompt_end;
    for (size_t i = 0; i < chat.ids.size(); ++i)
        append(ex, {chat.ids[i]}, label_all || chat.assistant[i], chat.assistant[i]);
    ex.prompt_ids.assign(chat.ids.begin(), chat.ids.begin() + static_cast<std::ptrdiff_t>(prompt_end));
    ex.reference = msgs[last_assistant].content;
}

std::string joined(const std::vector<ChatSegment>& segments) {
    std::string text;
    for (const auto& s : segments) text += s.text;
    return text;
}

}  // namespace

// A preference / feedback / sampling prompt: plain text (with the tokenizer's BOS), or
// messages rendered with the chat template and an open assistant turn to continue.
std::vector<int64_t> render_prompt(const nlohmann::json& prompt, const TextCodec& codec) {
    if (prompt.is_string()) return codec.encode(prompt.get<std::string>(), true);
    return codec.encode_chat(parse_messages(prompt, "prompt"), true).ids;
}

namespace {

// A completion: text + EOS, or assistant message(s): the text the chat template renders
// for them after the prompt, up to the end of the last assistant turn (ChatML: content +
// <|im_end|>, the tokens SFT learns for an assistant turn). Returns the tokens and the
// plain text.
std::pair<std::vector<int64_t>, std::string> render_completion(const nlohmann::json& c, const char* field,
                                                              const nlohmann::json& prompt, const TextCodec& codec) {
    if (c.is_string()) {
        auto ids = codec.encode(c.get<std::string>(), false);
        ids.push_back(codec.eos_id());
        return {ids, c.get<std::string>()};
    }
    const auto turns = parse_messages(c, field);
    std::string text;
    for (size_t i = 0; i < turns.size(); ++i) {
        if (turns[i].role != "assistant")
            throw std::runtime_error(std::string("field '") + field + "' message " + std::to_string(i) +
                                     " must have role 'assistant'");
        text += turns[i].content;
    }
    std::vector<ChatMessage> conversation = prompt.is_string() ? std::vector<ChatMessage>{} : parse_messages(prompt, "prompt");
    const std::string prompt_text = conversation.empty() ? "" : joined(codec.render(conversation, true));
    conversation.insert(conversation.end(), turns.begin(), turns.end());
    const auto segments = codec.render(conversation, false);
    const std::string full = joined(segments);
    size_t begin = std::string::npos, end = 0, at = 0;
    for (const auto& s : segments) {
        if (s.assistant) {
            begin = std::min(begin, at);
            end = at + s.text.size();
        }
        at += s.text.size();
    }
    if (!prompt_text.empty()) {
        if (full.compare(0, prompt_text.size(), prompt_text) != 0)
            throw std::runtime_error("the chat template does not render the prompt as the start of the conversation "
                                     "with field '" + std::string(field) + "'");
        begin = prompt_text.size();
    }
    if (begin == std::string::npos || end <= begin) return {{}, text};
    return {codec.encode(full.substr(begin, end - begin), false), text};
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

Example make_pair(const nlohmann::json& row, const TextCodec& codec, bool label_all, int64_t max_seq_len) {
    const auto& prompt_field = required(row, "prompt", "preference");
    const auto prompt = render_prompt(prompt_field, codec);
    auto [chosen, chosen_text] = render_completion(required(row, "chosen", "preference"), "chosen", prompt_field, codec);
    auto [rejected, rejected_text] =
        render_completion(required(row, "rejected", "preference"), "rejected", prompt_field, codec);
    Example ex = prompt_completion(prompt, chosen, label_all);
    ex.reference = chosen_text;
    finish(ex, max_seq_len);
    Example rej = prompt_completion(prompt, rejected, label_all);
    rej.reference = rejected_text;
    finish(rej, max_seq_len);
    ex.partner.push_back(std::move(rej));
    return ex;
}

Example make_feedback(const nlohmann::json& row, const TextCodec& codec, bool label_all, int64_t max_seq_len) {
    const auto& prompt_field = required(row, "prompt", "feedback");
    const auto prompt = render_prompt(prompt_field, codec);
    auto [completion, text] = render_completion(required(row, "completion", "feedback"), "completion", prompt_field, codec);
    const auto& label = required(row, "label", "feedback");
    if (!label.is_boolean()) throw std::runtime_error("field 'label' must be true (desirable) or false (undesirable)");
    Example ex = prompt_completion(prompt, completion, label_all);
    ex.reference = text;
    ex.desirable = label.get<bool>() ? 1 : 0;
    finish(ex, max_seq_len);
    return ex;
}

}  // namespace

Example make_example(const nlohmann::json& row, const TextCodec& codec, ft_label_policy policy, int64_t max_seq_len,
                     ft_data_shape shape) {
    Example ex;
    const bool label_all = policy == FT_LABELS_ALL;
    if (shape == FT_DATA_COMPLETIONS) {
        // A prompt to sample from; `completion` (when given) is the graders' reference.
        if (!row.is_object()) throw std::runtime_error("row must be a JSON object");
        const auto prompt = render_prompt(required(row, "prompt", "prompt"), codec);
        if (prompt.empty()) throw std::runtime_error("field 'prompt' is empty");
        append(ex, prompt, false);
        ex.prompt_ids = ex.ids;
        ex.prompt_length = static_cast<int64_t>(prompt.size());
        ex.prompt_text = row["prompt"].is_string() ? row["prompt"].get<std::string>() : codec.decode(prompt);
        if (row.contains("completion") && row["completion"].is_string()) ex.reference = row["completion"].get<std::string>();
        ex.row_json = row.dump();
        return ex;
    }
    if (shape == FT_DATA_PAIRS || shape == FT_DATA_FEEDBACK) {
        if (!row.is_object()) throw std::runtime_error("row must be a JSON object");
        ex = shape == FT_DATA_PAIRS ? make_pair(row, codec, label_all, max_seq_len)
                                    : make_feedback(row, codec, label_all, max_seq_len);
        ex.prompt_text = row["prompt"].is_string() ? row["prompt"].get<std::string>() : codec.decode(ex.prompt_ids);
        ex.row_json = row.dump();
        return ex;
    }
    ex.row_json = row.dump();
    if (row.contains("chosen") || row.contains("rejected"))
        throw std::runtime_error("row has 'chosen'/'rejected': a preference row needs a preference objective "
                                 "(dpo, orpo, simpo), not one that trains on single sequences");
    if (row.contains("messages")) {
        render_conversation(ex, row["messages"], codec, label_all);
        ex.prompt_text = codec.decode(ex.prompt_ids);
    } else if (row.contains("prompt") || row.contains("completion")) {
        if (!row.contains("prompt") || !row.contains("completion"))
            throw std::runtime_error("a prompt/completion row needs both 'prompt' and 'completion'");
        ex.prompt_text = string_field(row, "prompt");
        ex.reference = string_field(row, "completion");
        append(ex, codec.encode(ex.prompt_text, true), label_all);
        ex.prompt_ids = ex.ids;
        append(ex, codec.encode(ex.reference, false), true, true);
        append(ex, {codec.eos_id()}, true, true);
    } else if (row.contains("text")) {
        auto ids = codec.encode(string_field(row, "text"), true);
        if (ids.empty() || ids.back() != codec.eos_id()) ids.push_back(codec.eos_id());  // as TRL: text ends with EOS
        append(ex, ids, true);
    } else {
        throw std::runtime_error("row has none of 'text', 'prompt'/'completion', 'messages'");
    }
    finish(ex, max_seq_len);
    return ex;
}

namespace {

// A row of a model that reads no text: its steps, input ids and labels from encode_row.
Example fields_example(const nlohmann::json& row, const FieldEncoder& encode, ft_label_policy policy,
                       int64_t max_seq_len, ft_data_shape shape, bool labels_predict_next) {
    if (shape != FT_DATA_SEQUENCES)
        throw std::runtime_error("the model reads no text, so its rows are single sequences; this objective needs "
                                 "prompt/completion text (pairs, feedback or prompts to sample from)");
    EncodedFields enc = encode(row.dump(), policy, max_seq_len);
    if (enc.steps < 1) throw std::runtime_error("the model's encode_row set no positive step count (set_steps)");
    if (enc.steps > max_seq_len)
        throw std::runtime_error("the model's encode_row made " + std::to_string(enc.steps) +
                                 " steps, more than [stage.data] max_seq_len = " + std::to_string(max_seq_len));
    Example ex;
    ex.ids.assign(enc.steps, 0);
    ex.labels.assign(enc.steps, -100);
    ex.completion_mask.assign(enc.steps, 0);
    bool labelled = false;
    for (auto& f : enc.fields) {
        if (f.name != "input_ids" && f.name != "labels") {
            ex.fields.push_back(std::move(f));
            continue;
        }
        if (f.value.dim() != 1 || f.value.size(0) != enc.steps || f.value.scalar_type() != at::kLong)
            throw std::runtime_error("the model's encode_row gave '" + f.name + "' of shape " + c10::str(f.value.sizes()) +
                                     " and type " + std::string(c10::toString(f.value.scalar_type())) +
                                     "; it must be int64 [steps] with steps = " + std::to_string(enc.steps));
        const int64_t* v = f.value.data_ptr<int64_t>();
        (f.name == "labels" ? ex.labels : ex.ids).assign(v, v + enc.steps);
        labelled = labelled || f.name == "labels";
    }
    if (labels_predict_next) ex.labels[0] = -100;
    if (labelled && ex.num_labels() == 0) throw std::runtime_error("the model's encode_row labelled no step of this row");
    ex.row_json = row.dump();
    return ex;
}

// A decoder-style example (prompt then completion in one row) as an encoder-decoder reads
// it: the prompt becomes the source fields, the row the decoder's start id then the
// completion with its labels. max_seq_len has already bounded prompt and completion together.
void to_source_target(Example& ex, int64_t start, bool needs_labels) {
    const size_t p = std::min(ex.prompt_ids.size(), ex.ids.size());
    if (p == 0)
        throw std::runtime_error("an encoder-decoder row needs a prompt (its source): 'text' rows have none "
                                 "(set [stage.data] span_corruption = true to pre-train on them with T5's objective)");
    const std::vector<int64_t> source(ex.ids.begin(), ex.ids.begin() + static_cast<std::ptrdiff_t>(p));
    const auto tail = [&](const std::vector<int64_t>& v, int64_t first) {
        std::vector<int64_t> out{first};
        out.insert(out.end(), v.begin() + static_cast<std::ptrdiff_t>(p), v.end());
        return out;
    };
    ex.ids = tail(ex.ids, start);
    ex.labels = tail(ex.labels, -100);
    ex.completion_mask = tail(ex.completion_mask, 0);
    ex.prompt_ids = {start};
    ex.prompt_length = 1;
    auto src = source_fields(source);
    ex.fields.insert(ex.fields.begin(), src.begin(), src.end());
    if (needs_labels && ex.num_labels() == 0)
        throw std::runtime_error("row has no completion tokens left for the decoder after truncation to max_seq_len "
                                 "(prompt and completion together; raise [stage.data] max_seq_len)");
}

}  // namespace

std::vector<Field> source_fields(const std::vector<int64_t>& source) {
    const int64_t n = static_cast<int64_t>(source.size());
    return {{"source_ids", at::tensor(source, at::kLong), 0.0}, {"source_mask", at::ones({n}, at::kLong), 0.0}};
}

Example make_example(const nlohmann::json& row, const InputReader& reader, ft_label_policy policy, int64_t max_seq_len,
                     ft_data_shape shape) {
    if (!reader.codec) {
        if (!reader.fields) throw std::logic_error("an input reader needs a codec or a field encoder");
        return fields_example(row, reader.fields, policy, max_seq_len, shape, reader.labels_predict_next);
    }
    Example ex = make_example(row, *reader.codec, policy, max_seq_len, shape);
    if (reader.fields) {
        ex.fields = reader.fields(row.dump(), policy, max_seq_len).fields;
        for (auto& p : ex.partner) p.fields = ex.fields;  // the rejected answer is to the same image
    }
    if (reader.decoder_start >= 0) {
        to_source_target(ex, reader.decoder_start, shape != FT_DATA_COMPLETIONS);
        for (auto& p : ex.partner) to_source_target(p, reader.decoder_start, true);  // the same source
    }
    return ex;
}

Example mismatched_example(const Example& prompt_of, const Example& completion_of, int64_t max_seq_len) {
    const auto& c = completion_of;
    const std::vector<int64_t> completion(c.ids.begin() + std::min<int64_t>(c.prompt_length, c.ids.size()), c.ids.end());
    Example ex = prompt_completion(prompt_of.prompt_ids, completion, false);
    ex.fields = prompt_of.fields;  // the prompt's own inputs (its image), another example's answer
    // prompt_ids are the whole prompt (a long one was cut only in ids): truncate the KL
    // row too, also when there is no completion to score.
    if (static_cast<int64_t>(ex.ids.size()) > max_seq_len) {
        ex.ids.resize(max_seq_len);
        ex.labels.resize(max_seq_len);
        ex.completion_mask.resize(max_seq_len);
    }
    if (completion.empty()) {  // the other completion was truncated away: nothing to score
        ex.labels.assign(ex.ids.size(), -100);
        return ex;
    }
    if (!ex.labels.empty()) ex.labels[0] = -100;
    return ex;
}

}  // namespace fthost::host
