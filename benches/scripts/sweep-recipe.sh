#!/usr/bin/env bash
# Ranks recipe candidates by validation accuracy on short real-data runs (never the test set:
# the test pass every `train` run ends with is not read), one run at a time, and writes
#   OUT/sweep.md    the table (best validation accuracy of the raw weights or their EMA,
#                   training minutes, the flags of each candidate)
#   OUT/sweep.svg   validation accuracy against cumulative training minutes, one line each
#
#   benches/scripts/sweep-recipe.sh MODEL DATA_DIR OUT [EPOCHS] [TRAIN_IMAGES] [VAL_IMAGES]
#
# Defaults: 4 epochs of 15,000 training images, 2,000 validation images. Finished runs are
# kept and skipped on a second call, so an interrupted sweep continues where it stopped;
# REPORT_ONLY=1 writes the table and the chart from the runs finished so far, training none;
# ONLY="name name" trains just those candidates (the table still shows every finished run).
# Candidates: the CANDIDATES table below (name, then the flags over the preset it names).
set -euo pipefail
model="${1:?model}"; data="${2:?data dir}"; out="${3:?output folder}"
epochs="${4:-4}"; train_n="${5:-15000}"; val_n="${6:-2000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/release/train"
[ -x "$bin" ] || (cd "$root" && cargo build --release --bin train)

# name | flags (the onecycle candidates warm up for an eighth of the run). The fast preset pads
# the training crop by 2 since 2026-12-08; the sweeps in docs/recipe-sweep/ from before ran
# `fast` with the seed's 4 (and the candidate `fast-pad2`).
warm=$(python3 -c "print($epochs / 8)")
CANDIDATES=(
  "seed|--recipe seed"
  "onecycle-ls|--recipe seed --schedule onecycle --warmup-epochs $warm --label-smoothing 0.1"
  "fast|--recipe fast --warmup-epochs $warm"
  "fast-lr6e-3|--recipe fast --warmup-epochs $warm --lr 6e-3"
  "fast-sgd|--recipe fast --warmup-epochs $warm --optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 5e-4"
  "fast-cosine|--recipe fast --warmup-epochs $warm --schedule cosine"
  "fast-ls0.2|--recipe fast --warmup-epochs $warm --label-smoothing 0.2"
  "fast-tta-ft|--recipe fast --warmup-epochs $warm --tta flip-translate"
  "fast-pad4|--recipe fast --warmup-epochs $warm --crop-padding 4"
  "fast-pad1|--recipe fast --warmup-epochs $warm --crop-padding 1"
  "fast-wd-weights|--recipe fast --warmup-epochs $warm --weight-decay-on weights"
)

mkdir -p "$out"
[ -n "${REPORT_ONLY:-}" ] && CANDIDATES=()
for entry in "${CANDIDATES[@]}"; do
  name="${entry%%|*}"; flags="${entry#*|}"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  dir="$out/$name"
  if [ -f "$dir/$model/summary.json" ]; then echo "[sweep] $name: done before"; continue; fi
  rm -rf "$dir"
  echo "[sweep] $name: $flags"
  # shellcheck disable=SC2086
  "$bin" --model "$model" --data-dir "$data" --out "$dir" --epochs "$epochs" \
    --limit-train "$train_n" --limit-eval "$val_n" $flags --quiet >/dev/null
  echo "$flags" > "$dir/flags.txt"
done

runs=()
for dir in "$out"/*/; do
  name=$(basename "$dir")
  if [ -f "$dir$model/metrics.jsonl" ]; then runs+=("$name=$dir$model"); fi
done
[ ${#runs[@]} -gt 0 ] || { echo "[sweep] no runs in $out" >&2; exit 1; }
python3 "$root/benches/scripts/runs_report.py" --cpu "$(lscpu | sed -n 's/^Model name: *//p')" \
  --title "Recipe sweep: $model, $epochs epochs of $train_n training images, $val_n validation images" \
  --md "$out/sweep.md" --svg "$out/sweep.svg" "${runs[@]}"
