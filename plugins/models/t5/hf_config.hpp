// hf_config.hpp — T5's config.json (and the checkpoint's tensor names) as the t5 plugin's
// options.
#pragma once

#include <string>
#include <vector>

std::string t5_options_from_hf_checkpoint(const std::string& config_json, const std::vector<std::string>& tensor_names);
