#!/usr/bin/env bash
# charrnn against PyTorch, measured side by side in one run, one thread, on tinyshakespeare.
# Each round runs `charrnn bench --only CASES` (training steps only, after a warm-up, with the
# same run's single-thread sgemm rate) and then scripts/torch_reference.py --bench-steps for
# each case (nn.Embedding + nn.RNN/GRU/LSTM + nn.Linear of the same shape), so drift hits both
# alike; the summary gives the medians over rounds. Where the CPU has bf16 units
# (avx512_bf16 or amx_bf16 in /proc/cpuinfo) both sides are also measured in bf16: charrnn
# `bench --precision bf16`, PyTorch under torch.autocast("cpu", dtype=torch.bfloat16).
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
CORPUS=${CORPUS:-data/tinyshakespeare.txt}
BIN=target/release/charrnn
mkdir -p "$OUT"
BF16=0
grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && BF16=1
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
    precision=f32
    [ "$BF16" = 1 ] && precision=bf16
    "$BIN" bench --only "$CASES" --corpus "$CORPUS" --precision "$precision" \
        --json "$OUT/charrnn-$r.json" >/dev/null
    for case in ${CASES//,/ }; do
        # shellcheck disable=SC2046
        "$PY" scripts/torch_reference.py "$CORPUS" $(torch_args "$case") --bench-steps 10 \
            --threads 1 | tail -1 >"$OUT/torch-$case-$r.json"
        if [ "$BF16" = 1 ]; then
            # shellcheck disable=SC2046
            "$PY" scripts/torch_reference.py "$CORPUS" $(torch_args "$case") --bench-steps 10 \
                --threads 1 --bf16 | tail -1 >"$OUT/torch-bf16-$case-$r.json"
        fi
    done
    echo "round $r done" >&2
done
python3 - "$OUT" "$ROUNDS" "$CASES" "$BF16" <<'PY'
import json, statistics, sys
out, rounds, cases, bf16 = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4] == "1"
keys = ["charrnn", "eff", "torch", "charrnn_bf16", "eff_bf16", "torch_bf16"]
rows = {c: {k: [] for k in keys} for c in cases}
sgemm, bf16_peak = [], []
for r in range(1, rounds + 1):
    rep = json.load(open(f"{out}/charrnn-{r}.json"))
    sgemm.append(rep["sgemm_gflops"])
    if rep.get("bf16_gflops"):
        bf16_peak.append(rep["bf16_gflops"])
    for res in rep["results"]:
        if res["config"] not in rows:
            continue
        if res["path"] == "blas":
            rows[res["config"]]["charrnn"].append(res["chars_per_sec"])
            rows[res["config"]]["eff"].append(res["efficiency"])
        elif res["path"] == "blas_bf16":
            rows[res["config"]]["charrnn_bf16"].append(res["chars_per_sec"])
            rows[res["config"]]["eff_bf16"].append(res["efficiency"])
    for c in cases:
        rows[c]["torch"].append(json.load(open(f"{out}/torch-{c}-{r}.json"))["chars_per_sec"])
        if bf16:
            rows[c]["torch_bf16"].append(
                json.load(open(f"{out}/torch-bf16-{c}-{r}.json"))["chars_per_sec"])
line = f"kernels: {rep['machine']['blas_core']}; single-thread sgemm 1024³ median {statistics.median(sgemm):.0f} GFLOP/s"
if bf16_peak:
    line += f"; bf16 product 1024³ ({rep['machine'].get('bf16_kernel')}) median {statistics.median(bf16_peak):.0f} GFLOP/s"
print(line)
med = lambda v: statistics.median(v)
if not bf16:
    print("| config | charrnn chars/s | efficiency | PyTorch chars/s | charrnn ÷ PyTorch |")
    print("|---|---|---|---|---|")
    for name, v in rows.items():
        c, t = med(v["charrnn"]), med(v["torch"])
        print(f"| {name} | {c:.0f} | {med(v['eff']):.0%} | {t:.0f} | {c / t:.2f}× |")
else:
    print("| config | charrnn f32 | charrnn bf16 (efficiency) | PyTorch f32 | PyTorch bf16 | bf16 ÷ charrnn f32 | bf16 ÷ PyTorch bf16 |")
    print("|---|---|---|---|---|---|---|")
    for name, v in rows.items():
        c, cb, t, tb = med(v["charrnn"]), med(v["charrnn_bf16"]), med(v["torch"]), med(v["torch_bf16"])
        print(f"| {name} | {c:.0f} | {cb:.0f} ({med(v['eff_bf16']):.0%}) | {t:.0f} | {tb:.0f} | {cb / c:.2f}× | {cb / tb:.2f}× |")
PY
