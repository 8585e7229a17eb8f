// fuzz_program_output — the program grader's reading of its program's stdout
// (plugins/graders/program/score_output.hpp, parse_scores), called directly: the same
// inputs as fuzz_program_grader, without a sandboxed process per input, so that the
// parser sees thousands of times more of them.
//
// Input: byte 0 % 5 is the number of items in the batch; the rest is the program's output.
// Invariants (docs/GRADERS.md): the output is refused with std::runtime_error whose reason
// is printable ASCII (it ends up in summary.json and on stderr), or accepted with exactly
// one score per item, each in [0, 1] or NaN.
#include "fuzz_support.hpp"

#include "graders/program/score_output.hpp"

#include <cmath>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint32_t count = data[0] % 5;
    const std::string out(reinterpret_cast<const char*>(data + 1), size - 1);
    std::vector<double> scores;
    try {
        scores = fthost_program::parse_scores(out, count);
    } catch (const std::runtime_error& e) {
        const std::string why = e.what();
        FTHOST_FUZZ_CHECK(!why.empty());
        for (unsigned char c : why) FTHOST_FUZZ_CHECK(c >= 0x20 && c < 0x7f);
        return 0;
    } catch (const std::exception& e) {
        fthost::fuzz::unexpected("parse_scores", e.what());
    }
    FTHOST_FUZZ_CHECK(scores.size() == count);
    for (double s : scores) FTHOST_FUZZ_CHECK(std::isnan(s) || (s >= 0.0 && s <= 1.0));
    return 0;
}
