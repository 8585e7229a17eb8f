// generate_command.hpp — `fthost generate DIR`: completions from any trained stage or
// Hugging Face checkpoint (with its tokenizer) for prompts in a JSONL file (or given on
// the command line), written as JSONL.
#pragma once

#include "generate/generator.hpp"
#include "registry/plugin_registry.hpp"

#include <string>
#include <vector>

namespace fthost::host {

struct GenerateRequest {
    std::string stage_dir;     // a stage's final/ directory
    std::string input, output; // JSONL in ({"prompt": text or messages, ...}); out ("" = stdout)
    std::vector<std::string> prompts;  // --prompt values (instead of input)
    bool chat = false;                 // --prompt as a user message, through the chat template
    std::string chat_template;         // "" = the checkpoint's own
    SamplingOptions sampling;
    int64_t num_generations = 1;
    int64_t batch_size = 32;
    std::string device = "cpu";
    int64_t threads = 0;
};

// Returns the exit code. Each output row is the input row plus "completion",
// "finish_reason", "completion_tokens" (and "generation" when num_generations > 1);
// the output file is written whole or not at all.
int generate_command(const GenerateRequest& req, const PluginRegistry& registry);

}  // namespace fthost::host
