#!/usr/bin/env bash
# Kill and signal campaign: runs a config once uninterrupted, then N trials that interrupt
# `fthost run` at random points (SIGKILL, SIGTERM, SIGINT, SIGTERM twice; resumes are
# interrupted too), resume it with --resume until it completes, and compare metrics.jsonl
# (every field but timings), every file under stages/*/final/ (bytes) and summary.json
# with the uninterrupted run; invariants are checked after every attempt.
# Usage: bash bench/kill_campaign.sh [CONFIG] [--trials N] [--seed S] [--fthost PATH] [--set k=v]...
#        bash bench/kill_campaign.sh --help        (every option; docs/ARCHITECTURE.md explains)
# Without CONFIG it writes a short quickstart (40 + 30 steps, a checkpoint every 5 steps,
# threads = 1) to the work directory. Exit 0: every trial identical; 1: a mismatch or a
# broken invariant (the failed trials' run directories and logs are kept); 2: setup failed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KILL_CAMPAIGN_CWD="$PWD" exec python3 "$here/kill_campaign.py" "$@"
