#!/usr/bin/env bash
# The large-corpus experiment's data: the Linux kernel's C sources from Debian's
# linux-source-6.12 package (about 1.34 GB of *.c and *.h), prepared once with
# `charrnn prepare`. Not run by CI (it downloads about 150 MB and writes about 3 GB).
#
#   scripts/linux-corpus.sh [WORK_DIR]     # default: ../linux-corpus
#
# Leaves WORK_DIR/linux-source-6.12 (the unpacked tree) and WORK_DIR/data (the prepared
# data directory: vocab.json, tokens.bin, manifest.json). Train on it as docs/data.md does:
#   target/release/charrnn train WORK_DIR/data --cell gru --layers 2 --hidden 512 --batch 64 \
#       --seq-len 64 --lr 2e-3 --chars 32000000 --eval-every 500 --threads 1 --out linux-gru
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-../linux-corpus}"
mkdir -p "$work"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
tarball=$(ls /usr/src/linux-source-6.12.tar.* 2>/dev/null | head -1 || true)
if [ -z "$tarball" ]; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq linux-source-6.12
    tarball=$(ls /usr/src/linux-source-6.12.tar.* | head -1)
fi
if [ ! -d "$work/linux-source-6.12" ]; then
    echo "unpacking $tarball into $work"
    tar -xf "$tarball" -C "$work"
fi
if [ ! -x target/release/charrnn ]; then
    scripts/install-deps.sh
    cargo build --release
fi
time target/release/charrnn prepare "$work/linux-source-6.12" --include '*.c,*.h' \
    --out "$work/data" --force
du -sh "$work/data"
