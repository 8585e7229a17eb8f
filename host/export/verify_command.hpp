// verify_command.hpp — `fthost verify CHECKPOINT_DIR --reference FIXTURE.json`: the logit
// verifier. Runs the fixture's token ids through the model (a Hugging Face checkpoint or a
// stage directory) and compares the logits with the reference implementation's: max
// absolute and relative difference, pass or fail at a tolerance.
#pragma once

#include "registry/plugin_registry.hpp"

#include <string>

namespace fthost::host {

struct VerifyRequest {
    std::string checkpoint;  // checkpoint or stage directory
    std::string reference;   // JSON: {"input_ids": [[...], ...], "logits": [[[...]]]} (+ anything else)
    double tolerance = 1e-4;  // on the largest absolute difference
    std::string device = "cpu";
};

struct VerifyResult {
    double max_abs = 0, max_rel = 0;  // rel: |ours - ref| / max(|ref|, 1e-6), largest over all logits
    int64_t logits = 0;               // values compared
    bool pass = false;
};

VerifyResult verify_logits(const VerifyRequest& req, const PluginRegistry& registry);

// Prints the comparison; returns 0 on pass, 1 on fail.
int verify_command(const VerifyRequest& req, const PluginRegistry& registry);

}  // namespace fthost::host
