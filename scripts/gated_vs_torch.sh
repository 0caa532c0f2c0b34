#!/usr/bin/env bash
# charrnn against PyTorch on the gated cells, measured side by side in one run: 2-layer GRU and
# LSTM of width 512, B = 64, T = 64, one thread, on tinyshakespeare. Each round runs
# `charrnn bench --only GRU2_H512,LSTM2_H512` (training steps only, after a warm-up, with the
# same run's single-thread sgemm rate) and then scripts/torch_reference.py --bench-steps for
# each cell, so drift hits both alike; the summary gives the medians over rounds.
#
#   PY=/path/to/venv/bin/python scripts/gated_vs_torch.sh [ROUNDS] [OUT_DIR]
#
# PY must have torch. Run it on a quiet machine: a busy neighbour distorts both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
OUT=${2:-gated-vs-torch}
PY=${PY:-python3}
CORPUS=${CORPUS:-../shared/data/tinyshakespeare.txt}
BIN=target/release/charrnn
mkdir -p "$OUT"
for r in $(seq "$ROUNDS"); do
    "$BIN" bench --only GRU2_H512,LSTM2_H512 --corpus "$CORPUS" --json "$OUT/charrnn-$r.json" >/dev/null
    for cell in gru lstm; do
        "$PY" scripts/torch_reference.py "$CORPUS" --cell "$cell" --layers 2 --hidden 512 \
            --batch 64 --seq-len 64 --bench-steps 10 --threads 1 | tail -1 >"$OUT/torch-$cell-$r.json"
    done
    echo "round $r done" >&2
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
sgemm = []
for r in range(1, rounds + 1):
    rep = json.load(open(f"{out}/charrnn-{r}.json"))
    sgemm.append(rep["sgemm_gflops"])
    for res in rep["results"]:
        if res["path"] == "blas":
            rows.setdefault(res["config"], {"charrnn": [], "eff": [], "torch": []})
            rows[res["config"]]["charrnn"].append(res["chars_per_sec"])
            rows[res["config"]]["eff"].append(res["efficiency"])
    for cell, name in [("gru", "GRU2_H512_T64_B64"), ("lstm", "LSTM2_H512_T64_B64")]:
        rows[name]["torch"].append(json.load(open(f"{out}/torch-{cell}-{r}.json"))["chars_per_sec"])
print(f"kernels: {rep['machine']['blas_core']}; single-thread sgemm 1024³ median {statistics.median(sgemm):.0f} GFLOP/s")
print("| config | charrnn chars/s | efficiency | PyTorch chars/s | charrnn ÷ PyTorch |")
print("|---|---|---|---|---|")
for name, v in rows.items():
    c, t = statistics.median(v["charrnn"]), statistics.median(v["torch"])
    print(f"| {name} | {c:.0f} | {statistics.median(v['eff']):.0%} | {t:.0f} | {c / t:.2f}× |")
PY
