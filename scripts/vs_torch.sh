#!/usr/bin/env bash
# charrnn against PyTorch, measured side by side in one run, one thread, on tinyshakespeare.
# Each round runs `charrnn bench --only CASES` (training steps only, after a warm-up, with the
# same run's single-thread sgemm rate) and then scripts/torch_reference.py --bench-steps for
# each case (nn.Embedding + nn.RNN/GRU/LSTM + nn.Linear of the same shape), so drift hits both
# alike; the summary gives the medians over rounds.
#
#   PY=/path/to/venv/bin/python scripts/vs_torch.sh [ROUNDS] [OUT_DIR] [CASES]
#
# CASES: comma-separated bench configurations [default: GRU2_H512_T64_B64,LSTM2_H512_T64_B64];
# e.g. H512_T64_B64,H1024_T64_B128 for the vanilla cell. PY must have torch. Run it on a quiet
# machine: a busy neighbour distorts both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-vs-torch}
CASES=${3:-GRU2_H512_T64_B64,LSTM2_H512_T64_B64}
PY=${PY:-python3}
CORPUS=${CORPUS:-../shared/data/tinyshakespeare.txt}
BIN=target/release/charrnn
mkdir -p "$OUT"
# GRU2_H512_T64_B64 → --cell gru --layers 2 --hidden 512 --seq-len 64 --batch 64
torch_args() {
    python3 - "$1" <<'PY'
import re, sys
m = re.fullmatch(r"(?:(GRU|LSTM)(\d+)_)?H(\d+)_T(\d+)_B(\d+)", sys.argv[1])
if not m:
    sys.exit(f"not a bench configuration: {sys.argv[1]}")
cell, layers, h, t, b = m.groups()
print(f"--cell {(cell or 'rnn').lower()} --layers {layers or 1} --hidden {h} --seq-len {t} --batch {b}")
PY
}
for r in $(seq "$ROUNDS"); do
    "$BIN" bench --only "$CASES" --corpus "$CORPUS" --json "$OUT/charrnn-$r.json" >/dev/null
    for case in ${CASES//,/ }; do
        # shellcheck disable=SC2046
        "$PY" scripts/torch_reference.py "$CORPUS" $(torch_args "$case") --bench-steps 10 \
            --threads 1 | tail -1 >"$OUT/torch-$case-$r.json"
    done
    echo "round $r done" >&2
done
python3 - "$OUT" "$ROUNDS" "$CASES" <<'PY'
import json, statistics, sys
out, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
rows = {c: {"charrnn": [], "eff": [], "torch": []} for c in cases}
sgemm = []
for r in range(1, rounds + 1):
    rep = json.load(open(f"{out}/charrnn-{r}.json"))
    sgemm.append(rep["sgemm_gflops"])
    for res in rep["results"]:
        if res["path"] == "blas" and res["config"] in rows:
            rows[res["config"]]["charrnn"].append(res["chars_per_sec"])
            rows[res["config"]]["eff"].append(res["efficiency"])
    for c in cases:
        rows[c]["torch"].append(json.load(open(f"{out}/torch-{c}-{r}.json"))["chars_per_sec"])
print(f"kernels: {rep['machine']['blas_core']}; single-thread sgemm 1024³ median {statistics.median(sgemm):.0f} GFLOP/s")
print("| config | charrnn chars/s | efficiency | PyTorch chars/s | charrnn ÷ PyTorch |")
print("|---|---|---|---|---|")
for name, v in rows.items():
    c, t = statistics.median(v["charrnn"]), statistics.median(v["torch"])
    print(f"| {name} | {c:.0f} | {statistics.median(v['eff']):.0%} | {t:.0f} | {c / t:.2f}× |")
PY
