#!/usr/bin/env bash
# Puts tinyshakespeare (public domain, 1,115,394 bytes) at data/tinyshakespeare.txt: copied
# from ../shared/data when this checkout sits beside one (the development machines, which
# have no network), else downloaded from its public home in Karpathy's char-rnn repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out=data/tinyshakespeare.txt
url=https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
mkdir -p data
if [ -s "$out" ]; then
    echo "$out is already there"
elif [ -s ../shared/data/tinyshakespeare.txt ]; then
    cp ../shared/data/tinyshakespeare.txt "$out"
    echo "copied ../shared/data/tinyshakespeare.txt to $out"
elif command -v curl >/dev/null 2>&1; then
    curl -fsSL "$url" -o "$out.part" && mv "$out.part" "$out"
    echo "downloaded $url to $out"
else
    wget -q "$url" -O "$out.part" && mv "$out.part" "$out"
    echo "downloaded $url to $out"
fi
size=$(wc -c < "$out")
if [ "$size" -ne 1115394 ]; then
    echo "warning: $out holds $size bytes, not the expected 1,115,394" >&2
fi
