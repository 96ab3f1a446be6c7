#!/usr/bin/env bash
# Measures `serve` against ONNX Runtime itself, in one run on this machine (issue 18's figures):
#   1. `serve bench --url`: in-process ORT latency/throughput per batch size, then over HTTP one
#      keep-alive client (batch-1 latency) and 64 clients (throughput), as report.md/json;
#   2. wrk against the same server: 1 connection, then 64 (load generator on the same cores).
#
#   bash scripts/measure-serve.sh [MODELS_DIR] [SECONDS] [IMAGE]
#
# MODELS_DIR defaults to model-zoo/, SECONDS (per run) to 10, IMAGE to model-zoo/cat.png (a
# 32×32 test image). Builds (cargo/rustc) load the cores: the script waits up to 10 minutes for
# none to run (MEASURE_WAIT_STEPS=N: N×5 s instead), and says whether any ran while it measured.
# Needs wrk (apt-get install wrk). Server options come from the environment, for both the
# server and the in-process figures: e.g. SERVE_ORT_SPIN=off or SERVE_THREADS=1 for an A/B run.
# MEASURE_ITERS sets the timed in-process calls per batch size (200).
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-model-zoo}
secs=${2:-10}
image=${3:-model-zoo/cat.png}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -e .ort/cpu/libonnxruntime.so.1.31.1 ] || bash scripts/setup.sh --ort-only >/dev/null
cargo build --release -q --locked -p cifar-train -p cifar-serve  # both: one feature set, one cache for every script
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq "${MEASURE_WAIT_STEPS:-120}"); do pgrep -x rustc >/dev/null || pgrep -f 'cargo (build|test|check|run)' >/dev/null || break; sleep 5; done
builds_before=$(pgrep -xc rustc || true)

target/release/serve --models "$models" --bind 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 600); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$url" ] || { cat "$work/log" >&2; exit 1; }

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) logical CPUs; serve at $url; payload $image ($(stat -c %s "$image") bytes)"
target/release/serve bench --models "$models" --out "$work/report" --url "$url" --concurrency 64 --duration "$secs" \
    --image "$image" --batch-sizes 1,8,16,32,64,128 --iters "${MEASURE_ITERS:-200}" --warmup 10 >/dev/null 2>"$work/bench.log" || { cat "$work/bench.log" >&2; exit 1; }
sed -n '/^## Over HTTP/,$p' "$work/report/report.md"
cp "$work/report/report.json" "${MEASURE_REPORT:-/tmp/measure-serve-report.json}"

for name in $(sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' "$work/report/report.json" | sort -u); do
    grep -q "\"$name\"" <(curl -s "$url/v1/models") || continue
    for c in 1 64; do
        echo "== wrk, $c connection(s), $name"
        WRK_IMAGE="$image" wrk -t"$(( c == 1 ? 1 : 2 ))" -c"$c" -d"${secs}s" --latency -s scripts/wrk-classify.lua \
            "$url/v1/models/$name/classify" | grep -E 'Requests/sec|^ +50%|^ +99%|Non-2xx|Socket errors'
    done
done
curl -s "$url/metrics" | grep -E '^cifar_serve_batch_size_(sum|count)' || true
echo "== builds running: before $builds_before, after $(pgrep -xc rustc || true) rustc processes; load average $(cut -d' ' -f1-3 /proc/loadavg)"
