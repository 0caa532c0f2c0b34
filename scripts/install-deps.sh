#!/usr/bin/env bash
# Installs the system packages charrnn builds against (OpenBLAS + pkg-config) when missing.
# Debian/Ubuntu; uses sudo when not root. Does nothing when they are already there.
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openblas; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "charrnn needs OpenBLAS and pkg-config; install them with your package manager" >&2
    echo "(Fedora: dnf install openblas-devel pkgconf-pkg-config; macOS: brew install openblas pkg-config)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing libopenblas-dev and pkg-config (apt-get)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev pkg-config >/dev/null
