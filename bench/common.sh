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
