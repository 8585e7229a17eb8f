// local_launcher.hpp — `fthost run --nproc-per-node N`: N ranks of this executable on
// this machine, started the way torchrun starts them (RANK, LOCAL_RANK, WORLD_SIZE,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT), so the ranks cannot
// tell the two launchers apart.
//
// The launcher forwards SIGINT and SIGTERM to every rank once (the ranks run in their
// own process group, so a terminal's Ctrl-C reaches them only through it, and each rank
// sees one signal: a clean stop, not the second signal's exit at once). When a rank
// fails, it says which and how, and stops the others if they have not stopped on their
// own within grace_s. Each rank dies with the launcher (PR_SET_PDEATHSIG).
#pragma once

#include <string>
#include <vector>

namespace fthost::host {

// Runs `args` (the command line after the executable, without --nproc-per-node) as
// `nproc` ranks and waits for them; returns 0 when every rank succeeded, else the
// first failed rank's exit status (128 + signal when it was killed).
int launch_local_ranks(int nproc, const std::vector<std::string>& args, double grace_s = 60);

// A TCP port the kernel says is free on 127.0.0.1 now (another process may take it first).
int free_loopback_port();

}  // namespace fthost::host
