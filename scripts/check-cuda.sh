#!/usr/bin/env bash
# Keeps the CUDA path compiling where there is no GPU: candle's CUDA backend (+ cuDNN) in
# `train` and `models`, ort's CUDA execution provider in `serve`. Then checks that the kernels
# candle's build compiled are PTX the lent GPU machines' CUDA 13.0 driver loads
# (scripts/check-ptx.sh). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cuda-env.sh
cargo check --workspace --locked --all-targets --features cuda,cudnn "$@"
# The newest build of candle's kernels (an older toolkit's may sit beside it).
kernels=$(ls -dt target/debug/build/candle-kernels-*/out | head -1)
bash scripts/check-ptx.sh --driver-cuda 13.0 "$kernels"
