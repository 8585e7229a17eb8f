// stage_inputs.hpp — how a stage reads its rows, decided by its model (ft_model_vtable
// .inputs): text through the tokenizer that came with the starting model, the model's
// own fields through its encode_row, or both; and the stage settings that cannot work
// with what the model reads, refused before any data is read.
#pragma once

#include "config/run_config.hpp"
#include "data/example.hpp"
#include "tokenizer/text_codec.hpp"
#include "model/model_session.hpp"

#include <filesystem>
#include <memory>

namespace fthost::host {

struct StageInputs {
    std::shared_ptr<const TextCodec> codec;  // null: the model reads no text
    InputReader reader;                      // what load_datasets is given
};

// The codec is the starting model's (a Hugging Face checkpoint's tokenizer, kept in every
// final/ trained from it; base_dir empty: the byte tokenizer); `model` must outlive the
// reader.
StageInputs stage_inputs(ModelSession& model, const std::filesystem::path& base_dir, const std::string& chat_template);

// Throws a config error naming the stage and the key when the stage asks for something
// its model's inputs rule out: packing rows with model fields, graders or sampling for a
// model that reads no text, a tokenizer larger than the model's vocabulary.
void check_stage_inputs(const ModelSession& model, const StageInputs& inputs, const StageConfig& sc, ft_data_shape shape);

}  // namespace fthost::host
