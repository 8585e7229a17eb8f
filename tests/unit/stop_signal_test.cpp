// SIGINT/SIGTERM handling of `fthost run` (train/stop_signal): the first signal is a
// stop request, a second one exits at once with 128 + the signal. The run-level
// behaviour (checkpoint, "interrupted", --resume) is tested with real signals in
// tests/integration/cli_test.sh and in-process in train_test.cpp.
#include "train/stop_signal.hpp"

#include <gtest/gtest.h>

#include <csignal>

namespace fthost::host {
namespace {

TEST(Signals, TheFirstSignalRequestsAStop) {
    EXPECT_EXIT(
        {
            install_stop_signals();
            std::raise(SIGTERM);
            std::_Exit(stop_signal() == SIGTERM ? 7 : 1);  // still running: only a request
        },
        testing::ExitedWithCode(7), "stopping after this step");
}

TEST(Signals, ASecondSignalExitsAtOnce) {
    EXPECT_EXIT(
        {
            install_stop_signals();
            std::raise(SIGINT);
            std::raise(SIGINT);
            std::_Exit(1);  // not reached
        },
        testing::ExitedWithCode(128 + SIGINT), "second signal: exiting now");
}

}  // namespace
}  // namespace fthost::host
