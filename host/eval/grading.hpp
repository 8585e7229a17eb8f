// grading.hpp — scoring completions with the stage's grader plugins (pure C ABI). Each
// grader scores every item in [0, 1], or NaN when it does not apply.
#pragma once

#include "config/run_config.hpp"

#include <fthost/fthost.h>

#include <map>
#include <string>
#include <vector>

namespace fthost::host {

struct GradeInput {
    std::string prompt, completion, reference, row_json;
};

// scores[k][i]: grader k's score of item i.
std::vector<std::vector<double>> grade_all(const std::vector<PluginSection>& graders, const std::vector<GradeInput>& items);

// Each grader's mean score over the items where it applies (NaN when it applied to none).
std::map<std::string, double> mean_by_grader(const std::vector<PluginSection>& graders,
                                             const std::vector<std::vector<double>>& scores);

}  // namespace fthost::host
