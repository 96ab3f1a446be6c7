#!/usr/bin/env bash
# The README's first command: fetches the ONNX Runtime library once (scripts/setup.sh
# --ort-only), builds `serve` and serves the shipped models of model-zoo/ on 127.0.0.1:8080
# (override with BIND=host:port; extra arguments go to `serve`, see `serve --help`). The
# default model (what /v1/classify uses) is named in model-zoo/DEFAULT, its one place.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --ort-only
exec cargo run --release --locked -p cifar-serve --bin serve -- \
  --models model-zoo --default "$(tr -d '[:space:]' < model-zoo/DEFAULT)" --bind "${BIND:-127.0.0.1:8080}" "$@"
