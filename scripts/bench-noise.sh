#!/usr/bin/env bash
# How noisy is `charrnn bench --quick` on this machine, and does the regression gate pass an
# unchanged tree? Runs the quick bench N times (default 10) in a row, keeping every report in
# a history (target/bench-noise/history.jsonl and its .png), then prints per case the spread
# of its efficiency against the active kernels (min, median, max, and the largest drop below
# the median), and compares every report against BASELINE (default
# benches/baseline-quick.json) with THRESHOLD (default 0.25): each must pass.
#
#   scripts/bench-noise.sh [N] [BASELINE] [THRESHOLD]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10}"
baseline="${2:-benches/baseline-quick.json}"
threshold="${3:-0.25}"
out=target/bench-noise
rm -rf "$out"
mkdir -p "$out"
cargo build --release --quiet
for i in $(seq 1 "$n"); do
    target/release/charrnn bench --quick --json "$out/report-$i.json" \
        --history "$out/history.jsonl" > /dev/null 2>&1
    echo "run $i of $n done"
done
python3 - "$out" "$n" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
cases = {}
for i in range(1, n + 1):
    r = json.load(open(f"{out}/report-{i}.json"))
    for c in r["results"]:
        eff = c["gflops"] / (r["sgemm_gflops"] * c["case"]["threads"])
        cases.setdefault(f'{c["config"]} {c["path"]}', []).append(eff)
print(f"| case | min | median | max | largest drop below the median |")
print(f"|---|---|---|---|---|")
worst = 0.0
for name, e in cases.items():
    med = statistics.median(e)
    drop = 1 - min(e) / med
    worst = max(worst, drop)
    print(f"| {name} | {100*min(e):.1f}% | {100*med:.1f}% | {100*max(e):.1f}% | {100*drop:.1f}% |")
print(f"\nlargest drop of any case below its median over {n} runs: {100*worst:.1f}%")
PY
if [ -f "$baseline" ]; then
    fails=0
    for i in $(seq 1 "$n"); do
        if ! target/release/charrnn bench --compare "$baseline" --current "$out/report-$i.json" \
            --threshold "$threshold" > "$out/compare-$i.txt" 2>&1; then
            fails=$((fails + 1))
            echo "report $i REGRESSED against $baseline:"; cat "$out/compare-$i.txt"
        fi
    done
    echo "$((n - fails)) of $n unchanged-tree reports pass the gate against $baseline (threshold $threshold)"
    [ "$fails" = 0 ]
fi
