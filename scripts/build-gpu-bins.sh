#!/usr/bin/env bash
# Builds the CUDA-enabled `train` and `serve` for a GPU machine that has no Rust toolchain, into
# dist/gpu/ (git-ignored), ready to carry there with scripts/gpu-check.sh. Needs no GPU here:
# nvcc comes from the PyPI wheels (scripts/cuda-env.sh). Binaries built on this older glibc run
# on newer ones; the CUDA driver, cuBLAS/cuRAND (and cuDNN with the cudnn feature) are loaded
# at run time from the GPU machine. First build ~15 min on 2 cores (candle's kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cuda-env.sh
FEATURES=${FEATURES:-cifar-train/cuda,cifar-serve/cuda}
cargo build --release --locked -p cifar-train -p cifar-serve --features "$FEATURES"
mkdir -p dist/gpu
cp target/release/train target/release/serve dist/gpu/
strip dist/gpu/train dist/gpu/serve 2>/dev/null || true
ls -la dist/gpu
