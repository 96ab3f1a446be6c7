#!/usr/bin/env bash
# Trains the zoo's plan (model-zoo/plan.tsv), one run at a time, in its order: a run whose
# folder holds summary.json is finished and skipped, a run whose folder exists is continued
# with --resume (so a later session on the same machine picks up where the last one stopped),
# any other is started; a model already shipped in model-zoo/ with the plan's recipe and epochs
# is skipped. Run it in the background, with its runs outside the work tree:
#
#   nohup bash scripts/train-zoo.sh [RUNS_DIR] [DATA_DIR] > ~/cifar-runs/train-zoo.log 2>&1 &
#
# RUNS_DIR defaults to ~/cifar-runs/zoo, DATA_DIR to ../shared/data/cifar-10-batches-bin.
# ONLY=MODEL trains that line alone; DRY_RUN=1 prints what it would run. The `train` binary is built once and copied next to the
# runs, so later builds in the checkout do not swap it under a running job. Finished runs are
# shipped into model-zoo/ by scripts/ship-model.sh, deliberately, not by this script.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-$HOME/cifar-runs/zoo}
data=${2:-../shared/data/cifar-10-batches-bin}
mkdir -p "$runs" "$runs/../bin"
[ -n "${DRY_RUN:-}" ] || cargo build --release -q --locked -p cifar-train -p cifar-serve  # both: one feature set, one cache for every script
bin="$(cd "$runs/../bin" && pwd)/train-$(git rev-parse --short=12 HEAD)"
[ -n "${DRY_RUN:-}" ] || [ -x "$bin" ] || cp target/release/train "$bin"
# "PRESET EPOCHS" of the shipped run (runs from before presets existed used the seed's).
shipped_as() {
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["recipe"].get("preset") or "seed", s["epochs"])' "model-zoo/$1/summary.json"
}
sed -e 's/#.*//' model-zoo/plan.tsv | while IFS=$'\t' read -r model recipe epochs flags; do
    [ -n "$model" ] || continue
    [ -z "${ONLY:-}" ] || [ "$ONLY" = "$model" ] || continue
    dir="$runs/$model"
    if [ -f "model-zoo/$model/summary.json" ] && [ "$(shipped_as "$model")" = "$recipe $epochs" ]; then
        echo "== $model: shipped as planned (model-zoo/$model/summary.json)"
        continue
    fi
    if [ -e "$dir/summary.json" ]; then
        echo "== $model: finished ($dir/summary.json)"
        continue
    fi
    resume=()
    [ -d "$dir" ] && resume=(--resume)
    echo "== $model: --recipe $recipe --epochs $epochs $flags ${resume[*]:-} ($(date -u +%FT%TZ))"
    [ -z "${DRY_RUN:-}" ] || { echo "$bin --model $model --recipe $recipe --epochs $epochs $flags ${resume[*]:-}"; continue; }
    # shellcheck disable=SC2086  # the plan's flags are words
    # The run exports at its end and checks the export against ONNX Runtime: point it at the
    # checkout's library, since the binary runs from outside the checkout.
    ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.ort/cpu/libonnxruntime.so.1.31.1} "$bin" --model "$model" --recipe "$recipe" --epochs "$epochs" $flags "${resume[@]}" \
        --data-dir "$data" --out "$runs" < /dev/null
done
