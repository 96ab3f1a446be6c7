#!/usr/bin/env bash
# Quantizes every shipped f32 model (model-zoo/*.onnx but the shipped *-int8.onnx) with `train quantize` (default settings:
# 1,000 calibration images, per-channel weights, accuracy measured on all test images) and
# benchmarks the int8 files beside their f32 sources with `serve bench` (batch 1 and 128):
# report.md's "int8 beside f32" table is the closing comparison.
#
#   bash scripts/quantize-zoo.sh DATA_DIR [OUT_DIR] [ITERS] [-- extra `train quantize` flags]
#
# DATA_DIR holds the CIFAR-10 binary files (calibration reads data_batch_*.bin only). Binaries
# come from target/release (built here) unless BIN_DIR names another folder with `train` and
# `serve`. The CPU model and its int8 features (avx512_vnni, amx) are printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: quantize-zoo.sh DATA_DIR [OUT_DIR] [ITERS] [-- flags]}
out=${2:-/tmp/int8-zoo}
iters=${3:-50}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
[ -e .ort/cpu/libonnxruntime.so.1.31.1 ] || bash scripts/setup.sh --ort-only >/dev/null
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --release -q -p cifar-train --bin train -p cifar-serve --bin serve
    BIN_DIR=target/release
fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "int8 features: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512_vnni|avx_vnni|avx512bw|amx_int8|amx_tile)$' | sort | tr '\n' ' ')"
mkdir -p "$out/models"
for f in model-zoo/*.onnx; do
    name=$(basename "$f" .onnx)
    [ "${name%-int8}" = "$name" ] || continue
    cp "$f" "$out/models/$name.onnx"
    "$BIN_DIR/train" quantize --onnx "$f" --out "$out/models/$name-int8.onnx" --data-dir "$data" "$@"
done
"$BIN_DIR/serve" bench --models "$out/models" --out "$out/report" --iters "$iters" --warmup 10 --batch-sizes 1,128
sed -n '/^## int8 beside f32/,/^## /p' "$out/report/report.md" | sed '$d'
