#!/usr/bin/env bash
# Whole-epoch training speed, side by side on the real data: our `train` (seed recipe, one
# epoch of the first IMAGES training images) and a PyTorch training loop over the same images
# (benches/scripts/torch_epoch.py), alternating per model, ROUNDS times, the side that goes first
# swapped every round (so a host whose speed drifts during a model's rounds favours neither);
# the best round of each side counts (other load only ever slows a round down). Needs .venv-torch
# (benches/scripts/make-torch-venv.sh) and a release build of `train`.
#
#   bash benches/scripts/epoch-compare.sh DATA_DIR [MODELS] [IMAGES] [ROUNDS]
#   bash benches/scripts/epoch-compare.sh ../shared/data/cifar-10-batches-bin all 5120 1
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
data="${1:?usage: epoch-compare.sh DATA_DIR [MODELS|all] [IMAGES] [ROUNDS]}"
models="${2:-all}"
images="${3:-5120}"
rounds="${4:-1}"
threads=2
train="$root/target/release/train"
python="$root/.venv-torch/bin/python"
[ -x "$train" ] || { echo "no $train: cargo build --release -p cifar-train --bin train" >&2; exit 1; }
[ -x "$python" ] || { echo "no $python: bash benches/scripts/make-torch-venv.sh" >&2; exit 1; }
[ "$models" = all ] && models="$("$train" --list-models | awk '$2 ~ /^[0-9,]+$/ {print $1}' | paste -sd, -)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ours() { # img/s of one epoch of our trainer
    local out="$work/ours-$1"
    rm -rf "$out"
    "$train" --model "$1" --data-dir "$data" --epochs 1 --limit-train "$images" --limit-eval 256 \
        --threads "$threads" --out "$out" --quiet > "$out.log" 2>&1 || { cat "$out.log" >&2; exit 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["history"][0]["train_img_s"])' "$out/$1/state.json"
}

torch() {
    "$python" "$root/benches/scripts/torch_epoch.py" --data "$data" --model "$1" --images "$images" \
        --threads "$threads" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["img_s"])'
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "one epoch of the first $images training images, batch 128, $threads threads, seed recipe; best of $rounds alternating round(s)"
printf '%-16s %12s %12s %7s\n' model "ours img/s" "torch img/s" ratio
logsum=0; count=0
for m in ${models//,/ }; do
    best_o=0; best_t=0
    for r in $(seq "$rounds"); do
        if [ $((r % 2)) = 1 ]; then o="$(ours "$m")"; t="$(torch "$m")"; else t="$(torch "$m")"; o="$(ours "$m")"; fi
        best_o="$(python3 -c "print(max($best_o, $o))")"; best_t="$(python3 -c "print(max($best_t, $t))")"
    done
    ratio="$(python3 -c "print(f'{$best_o / $best_t:.2f}')")"
    printf '%-16s %12.1f %12.1f %7s\n' "$m" "$best_o" "$best_t" "$ratio"
    logsum="$(python3 -c "import math; print($logsum + math.log($best_o / $best_t))")"; count=$((count + 1))
done
python3 -c "import math; print(f'geometric mean of the ratios: {math.exp($logsum / $count):.2f}')"
