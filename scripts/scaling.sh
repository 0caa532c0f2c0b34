#!/usr/bin/env bash
# Thread scaling of the two strategies, as a Markdown table of chars/s:
#   rayon shards (--threads N, BLAS single-threaded)  vs  threaded BLAS (--blas-threads N).
# Usage: scripts/scaling.sh [THREADS...]            (default: 1 2 4 8 16)
# Env:   CHARRNN (binary, default target/release/charrnn), CORPUS (default: built-in),
#        STEPS (per run, default 8), LOAD=1 (run a CPU-bound neighbour process meanwhile).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CHARRNN:-target/release/charrnn}
THREADS=("${@:-1 2 4 8 16}")
read -r -a THREADS <<< "${THREADS[*]}"
STEPS=${STEPS:-8}
out=$(mktemp -d)
trap 'rm -rf "$out"; [ -n "${load_pid:-}" ] && kill "$load_pid" 2>/dev/null || true' EXIT
if [ "${LOAD:-0}" = 1 ]; then
    # A CPU-bound neighbour: one busy shell loop.
    (while :; do :; done) &
    load_pid=$!
fi
run() { # args... -> chars/s of a short run (after one warm-up step inside the run)
    "$BIN" train ${CORPUS:+"$CORPUS"} --seq-len 64 --steps "$STEPS" --out "$out" --quiet --json "$@" \
        | tail -n 1 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["chars_per_sec"])'
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load=${LOAD:-0}"
echo "BLAS core: $("$BIN" train --steps 1 --out "$out" --quiet --json --hidden 8 | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])')"
echo
printf '| H, B | strategy |'; for t in "${THREADS[@]}"; do printf ' %s thr |' "$t"; done; echo
printf '|---|---|'; for _ in "${THREADS[@]}"; do printf -- '---|'; done; echo
for cfg in "512 256" "128 256"; do
    read -r h b <<< "$cfg"
    printf '| %s, %s | rayon shards (16) |' "$h" "$b"
    for t in "${THREADS[@]}"; do printf ' %s |' "$(run --hidden "$h" --batch "$b" --shards 16 --threads "$t")"; done; echo
    printf '| %s, %s | threaded BLAS |' "$h" "$b"
    for t in "${THREADS[@]}"; do printf ' %s |' "$(run --hidden "$h" --batch "$b" --blas-threads "$t")"; done; echo
done
