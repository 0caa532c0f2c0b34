#!/usr/bin/env bash
# Data parallelism on this machine: one process on one thread, one process on two threads
# (rayon shards), and two MPI ranks of one thread each, for vanilla H=512 and a 2-layer GRU
# of width 512 (B=64, T=64, 2 shards, no validation), plus the exchange alone (examples/
# allreduce). Prints chars/s and rank 0's time in the gradient exchange.
# Usage: scripts/mpi-bench.sh [CORPUS]   (default data/tinyshakespeare.txt: scripts/get-tinyshakespeare.sh)
# Kernels: whatever OPENBLAS_CORETYPE says; run it as `env -u OPENBLAS_CORETYPE ...` for the
# CPU's own choice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-mpi.sh
corpus=${1:-data/tinyshakespeare.txt}
cargo build --release --quiet --features mpi --example allreduce
bin=target/release/charrnn
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mpirun="mpirun --allow-run-as-root --oversubscribe"
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }
for model in "rnn 1 60" "gru 2 12"; do
    set -- $model
    args=(train "$corpus" --cell "$1" --layers "$2" --hidden 512 --batch 64 --seq-len 64 --shards 2
        --steps "$3" --val-frac 0 --quiet --json --force)
    one=$($bin "${args[@]}" --threads 1 --out "$out/one" 2>/dev/null | field chars_per_sec)
    two=$($bin "${args[@]}" --threads 2 --out "$out/two" 2>/dev/null | field chars_per_sec)
    json=$($mpirun -n 2 $bin "${args[@]}" --out "$out/mpi" 2>/dev/null | tail -1)
    mpi=$(echo "$json" | field chars_per_sec)
    secs=$(echo "$json" | field seconds)
    red=$(echo "$json" | field reduce_seconds)
    printf '%s x%s H=512: 1 process 1 thread %.0f chars/s | 1 process 2 threads %.0f | 2 ranks %.0f (%.2fx one thread; rank 0 in the exchange %.3f of %.2f s = %.1f%%)\n' \
        "$1" "$2" "$one" "$two" "$mpi" "$(python3 -c "print($mpi/$one)")" "$red" "$secs" \
        "$(python3 -c "print(100*$red/$secs)")"
    $mpirun -n 2 target/release/examples/allreduce "$1" "$2" 512 65
done
