#!/usr/bin/env bash
# The main job on the built-in default: install what is missing, build, train on the built-in
# synthetic corpus (model in ./run), then sample 400 characters from the trained model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release
./target/release/charrnn train --out run --force "$@"
echo "--- sample (charrnn sample --model run/model.safetensors --len 400) ---"
./target/release/charrnn sample --model run/model.safetensors --len 400
