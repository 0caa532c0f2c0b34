#!/usr/bin/env bash
# The test suite: install what is missing, then run every test in release mode (the numeric
# tests train real models; debug builds would make them 20× slower).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --release "$@"
