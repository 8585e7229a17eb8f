#!/usr/bin/env bash
# Makes the Python environment that generates tests/fixtures/*: trl==0.28.0 (the
# objectives' fixtures), peft==0.21.2 (the adapters' and the PEFT export's) and
# bitsandbytes==0.50.2 (NF4 and QLoRA), sentencepiece (T5 tokenizers), evaluate + sacrebleu (the SARI
# reference, tests/fixtures/make_sari_fixtures.py), the versions they were made with, in a venv that reuses the torch setup.sh installed instead of downloading it. Tooling only: fthost and
# its tests never run Python. Idempotent.
set -euo pipefail
CACHE="${FTHOST_CACHE:-$HOME/.cache/fthost}"
TORCH_VENV="$CACHE/torch-2.11.0"
VENV="$CACHE/fixtures-venv"
[ -d "$TORCH_VENV" ] || { echo "run scripts/setup.sh first (it installs torch into $TORCH_VENV)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
site() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }
site "$TORCH_VENV" > "$(site "$VENV")/fthost-torch.pth"
"$VENV/bin/pip" install -q "trl==0.28.0" "peft==0.21.2" "bitsandbytes==0.50.2" requests sentencepiece==0.2.3 protobuf "evaluate==0.4.6" "sacrebleu==2.6.0" sacremoses
"$VENV/bin/python" -c 'import trl, torch; print("trl", trl.__version__, "torch", torch.__version__)'
