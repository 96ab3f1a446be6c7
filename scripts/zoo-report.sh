#!/usr/bin/env bash
# Regenerates model-zoo/report/: the `serve bench` report of every shipped model (Markdown,
# JSON, SVG charts: latency, throughput against MACs, accuracy against GMACs beside the seed's
# seven published points). Run it whenever a model in model-zoo/ changes; the zoo test checks
# that the report covers exactly the shipped files and that model-zoo/DEFAULT is the model its
# rule picks (the most accurate one whose batch-1 p50 here is under 2 ms).
#
#   bash scripts/zoo-report.sh [ITERS]
#
# ITERS (timed calls per batch size, default 200) trades run time for steadier percentiles.
# Builds and training runs load the cores and slow every figure: the script waits up to 10
# minutes for cargo/rustc to finish and warns when a `train` process is running.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-200}
[ -e .ort/cpu/libonnxruntime.so.1.31.1 ] || bash scripts/setup.sh --ort-only >/dev/null
cargo build --release -q --locked -p cifar-train -p cifar-serve  # both: one feature set, one cache for every script
for _ in $(seq ${ZOO_WAIT_STEPS:-120}); do pgrep -x rustc >/dev/null || pgrep -f 'cargo (build|test|check|run)' >/dev/null || break; sleep 5; done
if pgrep -f '(^|/)train(-[0-9a-f]+)? ' >/dev/null; then
    echo "warning: a train process is running; its load slows the figures (pause it with kill -STOP)" >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/serve bench --models model-zoo --out "$work/report" --iters "$iters" --warmup 10 --batch-sizes 1,8,32,128
rm -rf model-zoo/report
mkdir -p model-zoo/report
cp "$work"/report/* model-zoo/report/
echo "model-zoo/report/ written; the default model is named in model-zoo/DEFAULT"
