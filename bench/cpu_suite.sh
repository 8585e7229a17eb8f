#!/usr/bin/env bash
# The CPU benchmark suite in one command: the quickstart end to end, fthost next to
# Hugging Face transformers + PEFT + TRL (bench/peer.sh), packing on length-skewed data
# (bench/packing.sh), the loss step's memory at a 128k vocabulary (bench/logprobs.sh) and
# activation checkpointing (bench/checkpointing.sh), T5 next to transformers (bench/t5_peer.sh) and
# the encoder-decoder generator (bench/t5_generate.sh), data parallel on 2 ranks
# (bench/distributed_scaling.sh) and ZeRO-1's memory (bench/zero_memory.sh).
# Each prints its table with the machine, date and commit; docs/PERFORMANCE.md records
# them. About 16 minutes on 2 cores (the peer's venv is made on the first run).
# Usage: bash bench/cpu_suite.sh [BUILD_DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for b in quickstart peer packing logprobs checkpointing t5_peer t5_generate distributed_scaling zero_memory; do
  echo "== bench/$b.sh"
  bash "$HERE/$b.sh" "$@"
  echo
done
