#!/usr/bin/env bash
# Installs what `cargo build --features mpi` needs when missing: Open MPI (library, headers,
# mpirun) and libclang (the mpi crate generates its bindings with bindgen).
# Debian/Ubuntu; uses sudo when not root. Does nothing when they are already there.
set -euo pipefail
if command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 \
    && ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "charrnn's mpi feature needs an MPI (Open MPI or MPICH, with mpicc) and libclang;" >&2
    echo "install them with your package manager (Fedora: dnf install openmpi-devel clang-devel)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing libopenmpi-dev, openmpi-bin and libclang-dev (apt-get)..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
