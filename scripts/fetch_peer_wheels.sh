#!/usr/bin/env bash
# Downloads (does not install) the wheels bench/gpu_train.sh's peer needs on a machine
# without network (the lent GPU machine has torch but not transformers or PEFT):
# transformers, PEFT and their pure dependencies, not torch. Into DIR (default
# shared/wheels); carry it with the run. Idempotent.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/shared/wheels}"
mkdir -p "$DIR"
pip download -q -d "$DIR" --no-deps --python-version 3.12 --only-binary=:all: \
  "transformers==5.24.0" "peft==0.21.2" "accelerate" "tokenizers" "safetensors" "huggingface_hub" "hf_xet" \
  "regex" "pyyaml" "tqdm" "psutil" "filelock" "packaging" "fsspec" "typing_extensions" "typer" "shellingham" \
  "click" "rich" "markdown-it-py" "mdurl" "pygments" "httpx" "httpcore" "h11" "anyio" "idna" "certifi" "sniffio"
echo "$(ls "$DIR"/*.whl | wc -l) wheels in $DIR ($(du -sh "$DIR" | cut -f1))"
