# Sourced by the bench/*.sh scripts: strict mode, ROOT (the repository, also the working
# directory), BUILD (first argument or build/), OUT (a temporary folder removed on exit),
# and bench_header, which prints the machine and the date and commit measured.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cd "$ROOT"

bench_header() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "date: $(date -u +%Y-%m-%d)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

# The peers' Python (prints its path): transformers 5.24.0 + PEFT 0.21.2 + TRL 0.28.0 in
# ~/.cache/fthost/peer-venv, made on first use over the torch setup.sh installed, so both
# sides run the same LibTorch. Never a dependency of fthost itself.
peer_python() {
  local cache="${FTHOST_CACHE:-$HOME/.cache/fthost}" venv
  venv="$cache/peer-venv"
  [ -d "$cache/torch-2.11.0" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  local site_of='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  "$cache/torch-2.11.0/bin/python" -c "$site_of" > "$("$venv/bin/python" -c "$site_of")/fthost-torch.pth"
  "$venv/bin/python" -c 'import trl, peft, transformers' 2>/dev/null ||
    "$venv/bin/pip" install -q "transformers==5.24.0" "peft==0.21.2" "trl==0.28.0" "datasets" >&2
  echo "$venv/bin/python"
}
