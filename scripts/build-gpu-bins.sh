#!/usr/bin/env bash
# Builds what a lent GPU machine (no Rust, no network; see README "GPU (CUDA)") needs to run
# scripts/gpu-check.sh, and puts into dist/gpu/ (git-ignored) as much of it as the carry holds:
#   train-cuda.xz    `train` with candle's CUDA backend,
#   libonnxruntime.so.1.31.1.xz   ONNX Runtime's CPU library, for the export's parity check,
#   train-cudnn.xz   the same `train` with cuDNN convolutions (VARIANTS="cuda" builds only the first).
# The device tool carries at most 64 MiB: the tracked files (the model zoo most of all) come
# first, and what no longer fits stays in dist/gpu-all/, named in the output. xz, because it
# packs the binaries to a fraction; gpu-check.sh unpacks with Python's lzma.
# nvcc is CUDA 13.0 from the PyPI wheels (scripts/cuda-env.sh): the kernels' PTX must be one
# the machine's 13.0 driver loads, which scripts/check-ptx.sh checks here before anything goes.
# Binaries built on this older glibc run on newer ones. They link against stubs of the CUDA
# libraries (scripts/cuda-link-stubs.sh); the driver, cuBLAS, cuRAND, NVRTC and cuDNN are the
# GPU machine's, loaded when the binary starts. First build ~25 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/cuda-env.sh
. scripts/cuda-link-stubs.sh
nvcc --version | tail -1
VARIANTS=${VARIANTS:-cuda cudnn}
LIMIT=$((64 * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
rm -rf dist/gpu dist/gpu-all && mkdir -p dist/gpu dist/gpu-all
for v in $VARIANTS; do
  case $v in
    cuda) features=cifar-train/cuda ;;
    cudnn) features=cifar-train/cudnn ;;
    *) echo "build-gpu-bins: unknown variant $v (cuda, cudnn)" >&2; exit 2 ;;
  esac
  # Its own target folder: target/release keeps the CPU build the other scripts run.
  cargo build --release --locked -p cifar-train --features "$features" --target-dir target/gpu
  cp target/gpu/release/train "dist/gpu-all/train-$v"
  strip "dist/gpu-all/train-$v"
  bash scripts/check-ptx.sh --driver-cuda 13.0 "dist/gpu-all/train-$v"
  xz -9 -T0 "dist/gpu-all/train-$v"
done
cp .ort/cpu/libonnxruntime.so.1.31.1 dist/gpu-all/
xz -9 -T0 dist/gpu-all/libonnxruntime.so.1.31.1

# What travels besides dist/gpu: every tracked file and every untracked one git does not ignore.
tree=$(( $(git ls-files -z | xargs -0 cat | wc -c) + $(git ls-files -z --others --exclude-standard | xargs -0 -r cat | wc -c) ))
room=$((LIMIT - tree))
echo "the working tree takes $(mib "$tree") of the $(mib $LIMIT) carry; $(mib "$room") left for dist/gpu"
# The most important first: the first variant (it answers "does our CUDA path run, how fast"),
# then the ONNX Runtime library (the end-to-end run's parity check; without it the run still
# trains and exports, parity is skipped), then the other variants.
first=${VARIANTS%% *}
order="train-$first.xz libonnxruntime.so.1.31.1.xz"
for v in $VARIANTS; do [ "$v" = "$first" ] || order="$order train-$v.xz"; done
used=0
for f in $order; do
  size=$(wc -c < "dist/gpu-all/$f")
  if (( used + size <= room )); then
    mv "dist/gpu-all/$f" dist/gpu/; used=$((used + size)); echo "  travels: $f ($(mib "$size"))"
  else
    echo "  left out: $f ($(mib "$size")): no room in the carry (kept in dist/gpu-all/)"
  fi
done
echo "dist/gpu: $(mib "$used"); the whole carry $(mib $((tree + used))) of $(mib $LIMIT)"
[ -e "dist/gpu/train-$first.xz" ] || { echo "build-gpu-bins: not even train-$first fits the 64 MiB carry" >&2; exit 1; }
echo 'run it with the device tool: command "bash scripts/gpu-check.sh dist/gpu", carry ["dist/gpu"], timeout_s 480'
