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
# REPORT_ONLY=1 writes the table and the chart from the runs finished so far, training none.
# Candidates: the CANDIDATES table below (name, then the flags over the preset it names).
set -euo pipefail
model="${1:?model}"; data="${2:?data dir}"; out="${3:?output folder}"
epochs="${4:-4}"; train_n="${5:-15000}"; val_n="${6:-2000}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/release/train"
[ -x "$bin" ] || (cd "$root" && cargo build --release --bin train)

# name | flags (the onecycle candidates warm up for an eighth of the run)
warm=$(python3 -c "print($epochs / 8)")
CANDIDATES=(
  "seed|--recipe seed"
  "onecycle-ls|--recipe seed --schedule onecycle --warmup-epochs $warm --label-smoothing 0.1"
  "fast|--recipe fast --warmup-epochs $warm"
  "fast-lr6e-3|--recipe fast --warmup-epochs $warm --lr 6e-3"
  "fast-sgd|--recipe fast --warmup-epochs $warm --optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --weight-decay 5e-4"
  "fast-cosine|--recipe fast --warmup-epochs $warm --schedule cosine"
)

mkdir -p "$out"
[ -n "${REPORT_ONLY:-}" ] && CANDIDATES=()
for entry in "${CANDIDATES[@]}"; do
  name="${entry%%|*}"; flags="${entry#*|}"
  dir="$out/$name"
  if [ -f "$dir/$model/summary.json" ]; then echo "[sweep] $name: done before"; continue; fi
  rm -rf "$dir"
  echo "[sweep] $name: $flags"
  # shellcheck disable=SC2086
  "$bin" --model "$model" --data-dir "$data" --out "$dir" --epochs "$epochs" \
    --limit-train "$train_n" --limit-eval "$val_n" $flags --quiet >/dev/null
  echo "$flags" > "$dir/flags.txt"
done

python3 - "$out" "$model" "$epochs" "$train_n" "$val_n" "$(lscpu | sed -n 's/^Model name: *//p')" <<'PY'
import json, os, sys
out, model, epochs, train_n, val_n, cpu = sys.argv[1:]
runs = []
for name in sorted(os.listdir(out)):
    path = os.path.join(out, name, model, "metrics.jsonl")
    if not os.path.exists(path):
        continue
    rows = [json.loads(l) for l in open(path)]
    flags = open(os.path.join(out, name, "flags.txt")).read().strip()
    accs = [max(r["val_acc"], r.get("val_acc_ema", 0.0)) for r in rows]
    minutes, t = [], 0.0
    for r in rows:
        t += r["epoch_seconds"] / 60
        minutes.append(t)
    runs.append((name, flags, accs, minutes))
runs.sort(key=lambda r: -max(r[2]))
lines = [f"# Recipe sweep: {model}, {epochs} epochs of {train_n} training images, {val_n} validation images",
         "", f"CPU: {cpu}. Validation accuracy only (best epoch, raw weights or their EMA).", "",
         "| rank | candidate | best val % | final val % | train + val minutes | flags |", "|---:|---|---:|---:|---:|---|"]
for i, (name, flags, accs, minutes) in enumerate(runs, 1):
    lines.append(f"| {i} | {name} | {100*max(accs):.2f} | {100*accs[-1]:.2f} | {minutes[-1]:.1f} | `{flags}` |")
open(os.path.join(out, "sweep.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
# SVG: validation accuracy against minutes.
W, H, L, B = 640, 400, 60, 50
tmax = max(m[-1] for *_, m in runs) or 1
amax = min(1.0, max(max(a) for _, _, a, _ in runs) + 0.05); amin = max(0.0, min(min(a) for _, _, a, _ in runs) - 0.05)
x = lambda t: L + (W - L - 20) * t / tmax
y = lambda a: H - B - (H - B - 30) * (a - amin) / (amax - amin)
colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="18" text-anchor="middle">{model}: validation accuracy against training minutes ({cpu})</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/><line x1="{L}" y1="30" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-12}" text-anchor="middle">minutes (training and validation)</text>',
       f'<text x="16" y="{H/2}" transform="rotate(-90 16 {H/2})" text-anchor="middle">validation accuracy</text>']
for k in range(6):
    a = amin + (amax - amin) * k / 5; t = tmax * k / 5
    svg.append(f'<text x="{L-6}" y="{y(a)+4:.1f}" text-anchor="end">{100*a:.0f}%</text>')
    svg.append(f'<text x="{x(t):.1f}" y="{H-B+16}" text-anchor="middle">{t:.0f}</text>')
for i, (name, _, accs, minutes) in enumerate(runs):
    c = colors[i % len(colors)]
    pts = " ".join(f"{x(t):.1f},{y(a):.1f}" for t, a in zip(minutes, accs))
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
    svg.append(f'<text x="{L+10}" y="{40+16*i}" fill="{c}">{name}: {100*max(accs):.1f}%</text>')
svg.append("</svg>")
open(os.path.join(out, "sweep.svg"), "w").write("\n".join(svg) + "\n")
PY
