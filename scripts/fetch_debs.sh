#!/usr/bin/env bash
# Downloads (does not install) the Debian packages the build needs besides a compiler,
# CMake and Ninja — Boost, toml++, nlohmann-json, GoogleTest, PCRE2, utf8proc,
# SentencePiece, Gloo's headers — with their dependencies,
# into DIR (default shared/debs), for machines without network such as the lent GPU
# machine (bench/gpu_env.sh unpacks them there into a private prefix). Idempotent.
set -euo pipefail
DIR="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/shared/debs}"
PACKAGES=(libboost-dev libboost-program-options-dev libtomlplusplus-dev nlohmann-json3-dev libgtest-dev
          pkg-config libpcre2-dev libutf8proc-dev libsentencepiece-dev libgloo-dev)
mkdir -p "$DIR"
cd "$DIR"
deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
         --no-enhances "${PACKAGES[@]}" | grep '^\w' | sort -u)
# Only these libraries and tools, not the base system the dependency closure also names
# (libc, the compiler's runtimes, Kerberos, OpenSSL...): bench/gpu_env.sh unpacks them
# into a private prefix, where an old copy of a base library would shadow the machine's.
for p in $deps; do
  case "$p" in
    libboost*|googletest|libgtest*|libgmock*|libpcre2*|pkg-config|pkgconf*|libpkgconf*|libsentencepiece*| \
    libtomlplusplus*|libutf8proc*|nlohmann-json*|libgloo-dev) ;;
    *) continue ;;
  esac
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null 2>&1 || echo "skipped $p (not downloadable)"
done
echo "$(ls *.deb | wc -l) packages in $DIR"
