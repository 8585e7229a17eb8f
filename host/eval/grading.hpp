// grading.hpp — scoring completions with the stage's grader plugins (pure C ABI). Each
// grader scores every item in [0, 1], or NaN when it does not apply. A grading call that
// fails (the plugin returns an error: a program grader that crashed, timed out or
// printed garbage) is not a score: the grader's `on_error` decides what its items get.
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

// What one grader's failed calls cost in one grade_all.
struct GraderFailure {
    int64_t items = 0, calls = 0;  // items without a real score, calls that failed
    std::string reason;            // the last failure's message
};

struct Grades {
    std::vector<std::vector<double>> scores;  // [grader][item]: NaN = not applicable, or lost
    std::vector<std::vector<char>> lost;      // [grader][item]: failed under on_error = "skip"
    std::vector<GraderFailure> failures;      // [grader]
    // Whether any grader lost item i (its reward is unknown).
    bool lost_any(size_t item) const;
    // scores[k][i] as the caller indexes it.
    const std::vector<double>& operator[](size_t grader) const { return scores[grader]; }
};

// Every grader over every item. A failed call under on_error = "fail" throws; under
// "zero" its items score 0; under "skip" they are lost (NaN and marked). A combining
// grader's item is lost when a sub-grader lost it.
Grades grade_all(const std::vector<PluginSection>& graders, const std::vector<GradeInput>& items);

// Each grader's mean score over the items where it applies (NaN when it applied to none).
std::map<std::string, double> mean_by_grader(const std::vector<PluginSection>& graders,
                                             const std::vector<std::vector<double>>& scores);

// "<grader>/failed": the items each grader that failed this time left without a real
// score (lost or zeroed), for eval results; graders without failures are absent.
std::map<std::string, double> failure_counts(const std::vector<PluginSection>& graders, const Grades& grades);

// A warning on stderr for each grader that failed in `what` (e.g. "the held-out eval of
// stage 'sft'"), with what its items got.
void warn_failures(const std::vector<PluginSection>& graders, const Grades& grades, const std::string& what);

}  // namespace fthost::host
