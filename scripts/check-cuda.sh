#!/usr/bin/env bash
# Keeps the CUDA path compiling where there is no GPU: candle's CUDA backend (+ cuDNN) in
# `train` and `models`, ort's CUDA execution provider in `serve`. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cuda-env.sh
cargo check --workspace --locked --all-targets --features cuda,cudnn "$@"
