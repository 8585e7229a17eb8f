#include "train/stop_signal.hpp"

#include <csignal>
#include <cstring>
#include <unistd.h>

namespace fthost::host {
namespace {

volatile std::sig_atomic_t g_signal = 0;

void say(const char* text) {
    const ssize_t n = ::write(STDERR_FILENO, text, std::strlen(text));  // async-signal-safe
    (void)n;
}

extern "C" void on_stop_signal(int signo) {
    if (g_signal != 0) {
        say("\nfthost: second signal: exiting now (the last checkpoint is intact)\n");
        ::_exit(128 + signo);
    }
    g_signal = signo;
    say("\nfthost: stopping after this step: a checkpoint is written and --resume continues from it "
        "(signal again to exit at once)\n");
}

}  // namespace

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

int stop_signal() { return g_signal; }
void request_stop(int signo) { g_signal = signo; }
void clear_stop_request() { g_signal = 0; }

}  // namespace fthost::host
