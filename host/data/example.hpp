// example.hpp — one dataset row turned into tokens and labels.
//
// Row shapes use TRL's field names:
//   {"text": ...}                              every token is a label (BOS as the
//                                              tokenizer adds it, EOS appended)
//   {"prompt": ..., "completion": ...}         labels on the completion (+ EOS) only,
//                                              or on every token for FT_LABELS_ALL
//   {"messages": [{"role", "content"}, ...]}   rendered with the chat template; labels
//                                              on the assistant turns (content + end of
//                                              turn, e.g. <|im_end|>)
// and for the preference data shapes (fthost.h's FT_DATA_PAIRS / FT_DATA_FEEDBACK):
//   {"prompt", "chosen", "rejected"}           one pair; the rejected sequence in `partner`
//   {"prompt", "completion", "label": bool}    binary feedback (KTO)
//   {"prompt", ...}                            a prompt to sample from (FT_DATA_COMPLETIONS);
//                                              a string "completion" is the graders' reference
// where prompt may be a string or a message list (rendered with the chat template and an
// open assistant turn) and each completion a string (+ EOS) or a list of assistant
// messages (as the template renders them after the prompt, as in SFT). Prompt and
// completion are tokenized separately, as TRL's DPOTrainer does.
#pragma once

#include "tokenizer/text_codec.hpp"

#include <fthost/fthost.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fthost::host {

struct SpanRow;  // data/span_corruption.hpp

// One tensor a model's encode_row made of a row (fthost.h's ft_example_sink.add): a batch
// stacks the examples' tensors along a new dim 0, padding every dim with `pad`.
struct Field {
    std::string name;
    at::Tensor value;
    double pad = 0.0;
};

// What a model's encode_row returned for one row; steps = -1 when it set none.
struct EncodedFields {
    std::vector<Field> fields;
    int64_t steps = -1;
};
using FieldEncoder = std::function<EncodedFields(const std::string& row_json, ft_label_policy, int64_t max_steps)>;

// How a stage's model reads rows (ft_model_vtable.inputs): its text through the codec
// (FT_INPUT_TEXT), its own fields through encode_row (FT_INPUT_FIELDS), or both (an
// image with its caption).
struct InputReader {
    const TextCodec* codec = nullptr;  // null: the model reads no text
    FieldEncoder fields;               // empty: the model has no encode_row
    // >= 0: an encoder-decoder (FT_INPUT_SOURCE): the prompt becomes the encoder's source
    // fields and the decoder's row starts with this id.
    int64_t decoder_start = -1;
    // The model predicts labels[t] from position t-1 (FT_LABEL_NEXT): nothing predicts a
    // row's first label, which is dropped from encode_row's labels as from text rows'.
    bool labels_predict_next = true;
};

// An encoder-decoder's source as the fields fthost.h's FT_INPUT_SOURCE names:
// "source_ids" and "source_mask" (int64 [S], both padded with 0).
std::vector<Field> source_fields(const std::vector<int64_t>& source);

struct Example {
    std::vector<int64_t> ids;
    std::vector<int64_t> labels;  // unshifted; -100 where no loss (always at position 0)
    std::vector<int64_t> completion_mask;  // 1 on completion / assistant tokens
    int64_t prompt_length = 0;             // tokens before the completion (pairs, feedback)
    // The example's second row (one element, or none): FT_DATA_PAIRS: the rejected
    // sequence; FT_DATA_FEEDBACK: this prompt with another example's completion (KTO's
    // mismatched pair for the KL estimate, fixed when the data is loaded, as TRL does).
    std::vector<Example> partner;
    int desirable = -1;                    // FT_DATA_FEEDBACK: 1 / 0
    // For generation-based eval: the prompt as tokens, and the expected answer.
    std::vector<int64_t> prompt_ids;
    std::string prompt_text, reference;
    std::string row_json;
    // The model's own tensors of this row (FT_INPUT_FIELDS); a partner row shares them.
    std::vector<Field> fields;
    // A span-corrupted 'text' row ([stage.data] span_corruption): what masks it again in
    // later epochs (remask_spans); null for every other row.
    std::shared_ptr<const SpanRow> span;
    int64_t num_labels() const;
};

// Throws std::runtime_error with a reason when the row has an unknown shape.
Example make_example(const nlohmann::json& row, const TextCodec& codec, ft_label_policy policy, int64_t max_seq_len,
                     ft_data_shape shape = FT_DATA_SEQUENCES);

// The same for any model: text through reader.codec, the model's fields through
// reader.fields. A model that reads no text takes one sequence per row (its steps and
// labels come from encode_row's "input_ids" / "labels").
Example make_example(const nlohmann::json& row, const InputReader& reader, ft_label_policy policy, int64_t max_seq_len,
                     ft_data_shape shape = FT_DATA_SEQUENCES);

// A prompt as tokens: plain text, or a message list rendered with the chat template and an open
// assistant turn (what generation continues). Throws on a malformed message list.
std::vector<int64_t> render_prompt(const nlohmann::json& prompt, const TextCodec& codec);

// Example i's prompt followed by the completion of `other` (FT_DATA_FEEDBACK's
// mismatched pairs for the KL estimate), truncated to max_seq_len.
Example mismatched_example(const Example& prompt_of, const Example& completion_of, int64_t max_seq_len);

}  // namespace fthost::host
