// hf_config.hpp — the decoder's options from a Hugging Face config.json of
// LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM (transformers 4.x keys —
// rope_theta, rope_scaling — and 5.x's rope_parameters alike).
#pragma once

#include <string>

// Returns the options as a JSON object text; throws fthost::Error naming the config.json
// key of any setting the decoder cannot honour (another activation, MLP biases, sliding
// window attention, an unsupported rope scaling type, ...).
std::string decoder_options_from_hf_config(const std::string& config_json);
