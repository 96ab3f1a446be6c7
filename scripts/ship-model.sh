#!/usr/bin/env bash
# Ships one finished training run into model-zoo/: RUN_DIR/model.onnx becomes
# model-zoo/NAME.onnx and the run's small reports go to model-zoo/NAME/ (summary.json,
# recipe.json, metrics.csv, curves.svg, confusion.svg). Never checkpoints or optimizer state.
# Refuses a run that did not finish. Afterwards: update README.md's zoo table (the zoo test
# prints the expected row), run scripts/zoo-report.sh, and check model-zoo/DEFAULT.
#
#   bash scripts/ship-model.sh ~/cifar-runs/zoo/resnet-heavy
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: ship-model.sh RUN_DIR}
[ -f "$run/summary.json" ] || { echo "$run: no summary.json, the run has not finished" >&2; exit 1; }
[ -f "$run/model.onnx" ] || { echo "$run: no model.onnx" >&2; exit 1; }
name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$run/summary.json")
python3 - "$run/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
if s["epochs"] != s["recipe"]["epochs"]:
    sys.exit(f"{sys.argv[1]}: {s['epochs']} of {s['recipe']['epochs']} epochs: not finished")
PY
mkdir -p "model-zoo/$name"
cp "$run/model.onnx" "model-zoo/$name.onnx"
for f in summary.json recipe.json metrics.csv curves.svg confusion.svg; do cp "$run/$f" "model-zoo/$name/"; done
echo "shipped model-zoo/$name.onnx and model-zoo/$name/"
