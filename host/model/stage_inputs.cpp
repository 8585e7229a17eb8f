#include "model/stage_inputs.hpp"

#include <fthost/plugin.hpp>

namespace fthost::host {

StageInputs stage_inputs(ModelSession& model, const std::filesystem::path& base_dir, const std::string& chat_template) {
    StageInputs in;
    if (model.reads_text()) {
        in.codec = base_dir.empty() ? TextCodec::bytes() : TextCodec::for_model(base_dir, chat_template);
        in.reader.codec = in.codec.get();
        in.reader.decoder_start = model.decoder_start_id();  // -1 unless an encoder-decoder
    }
    in.reader.labels_predict_next = model.traits().label_alignment == FT_LABEL_NEXT;
    if (model.traits().inputs & FT_INPUT_FIELDS)
        in.reader.fields = [&model](const std::string& row, ft_label_policy policy, int64_t max_steps) {
            return model.encode_row(row, policy, max_steps);
        };
    return in;
}

void check_stage_inputs(const ModelSession& model, const StageInputs& inputs, const StageConfig& sc, ft_data_shape shape) {
    const auto conflicts = input_conflicts(model.model_section().plugin, model.traits(), model.has_lm_head(), sc, shape);
    if (!conflicts.empty()) throw Error("stage '" + sc.name + "': " + conflicts.front().message, FT_ERR_CONFIG);
    if (!inputs.codec) return;
    if (model.has_lm_head() && model.vocab_size() < inputs.codec->vocab_size())
        throw Error("stage '" + sc.name + "': the model's vocab_size " + std::to_string(model.vocab_size()) +
                        " is smaller than the tokenizer's " + std::to_string(inputs.codec->vocab_size()) + " (" +
                        inputs.codec->describe() + ")",
                    FT_ERR_CONFIG);
}

}  // namespace fthost::host
