#!/usr/bin/env bash
# Peak memory and time of the loss step's LM-head part at a 128k vocabulary
# (Llama 3's 128,256), 8,192 tokens (batch x sequence), hidden 256: unchunked logits vs
# the host's chunked log-probs (bench/logprobs_bench.cpp; each in its own process).
# Usage: bash bench/logprobs.sh [BUILD_DIR] [--device cuda]   (results go in docs/PERFORMANCE.md)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_header
cmake --build "$BUILD" -j 2 --target fthost_logprobs_bench >/dev/null
"$BUILD/fthost_logprobs_bench" --tokens 8192 --vocab 128256 --hidden 256 "${@:2}"
