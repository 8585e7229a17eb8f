// stop_signal.hpp — SIGINT and SIGTERM as a request to stop cleanly: the training loop
// finishes its current step, writes a checkpoint and the run is marked "interrupted"
// (`fthost run --resume` continues from there). A second signal exits at once; every
// file fthost writes is written atomically (io/atomic_file), so nothing is left
// half-written either way.
#pragma once

namespace fthost::host {

// Installs the handlers (once, from the command line).
void install_stop_signals();
// The signal that asked to stop (SIGINT, SIGTERM), or 0.
int stop_signal();
inline bool stop_requested() { return stop_signal() != 0; }
// As if that signal had arrived (tests), and back to no request.
void request_stop(int signo);
void clear_stop_request();

}  // namespace fthost::host
