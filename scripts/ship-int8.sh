#!/usr/bin/env bash
# Ships the int8 form of shipped models: model-zoo/NAME.onnx, quantized by `train quantize` with
# its defaults (1,000 calibration images, percentile ranges, per-channel weights, measured on
# all test images, refused beyond a 1-point drop), becomes model-zoo/NAME-int8.onnx, and
# --run-dir model-zoo/NAME writes model-zoo/NAME-int8/ (the run's summary with the int8
# model's own test figures, its recipe and curves). Afterwards: the README zoo rows (the zoo
# test prints the expected ones) and scripts/zoo-report.sh.
#
#   bash scripts/ship-int8.sh DATA_DIR NAME [NAME ...]
#
# Models with grouped convolutions (resnext-*) are slower in int8 than in f32 under ONNX
# Runtime 1.31 (README, "int8 quantization"): `train quantize` warns, and they are not shipped.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: ship-int8.sh DATA_DIR NAME [NAME ...]}
shift
[ $# -gt 0 ] || { echo "usage: ship-int8.sh DATA_DIR NAME [NAME ...]" >&2; exit 2; }
[ -e .ort/cpu/libonnxruntime.so.1.31.1 ] || bash scripts/setup.sh --ort-only >/dev/null
cargo build --release -q --locked -p cifar-train -p cifar-serve  # both: one feature set, one cache for every script
for name in "$@"; do
    [ -f "model-zoo/$name.onnx" ] && [ -f "model-zoo/$name/summary.json" ] || { echo "model-zoo/$name.onnx is not shipped" >&2; exit 1; }
    target/release/train quantize --onnx "model-zoo/$name.onnx" --out "model-zoo/$name-int8.onnx" \
        --data-dir "$data" --run-dir "model-zoo/$name"
done
