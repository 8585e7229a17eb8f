// [stage.eval] group_by: graders' means per value of a row field (eval/task_eval).
#include "eval/task_eval.hpp"
#include "test_support.hpp"

#include <cmath>

namespace fthost::test {
namespace {

TEST(TaskEval, MeansByGroupAverageEachGradersScoresWithinEachValue) {
    StageConfig sc;
    sc.graders = {plugin(FT_KIND_GRADER, "exact_match"), plugin(FT_KIND_GRADER, "text_similarity")};
    sc.eval.group_by = "task";
    std::vector<Example> rows(5);
    const char* tasks[] = {R"({"task": "gec"})", R"({"task": "para"})", R"({"task": "gec"})", R"({"other": 1})",
                           R"({"task": 3})"};
    std::vector<const Example*> items;
    for (size_t i = 0; i < rows.size(); ++i) rows[i].row_json = tasks[i], items.push_back(&rows[i]);
    const std::vector<std::vector<double>> scores = {{1, 0, 0, 1, 1}, {0.5, std::nan(""), 0.25, 0.9, 0.9}};
    const auto m = means_by_group(sc, items, scores);
    ASSERT_EQ(m.size(), 4u);  // rows without a string "task" are in no group
    EXPECT_DOUBLE_EQ(m.at("task:gec/exact_match"), 0.5);
    EXPECT_DOUBLE_EQ(m.at("task:para/exact_match"), 0.0);
    EXPECT_DOUBLE_EQ(m.at("task:gec/text_similarity"), 0.375);
    EXPECT_TRUE(std::isnan(m.at("task:para/text_similarity")));  // NaN scores are skipped, as overall
}

}  // namespace
}  // namespace fthost::test
