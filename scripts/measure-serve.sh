#!/usr/bin/env bash
# Measures `serve` on loopback with wrk (64 connections, POST /v1/classify of a small PNG) and,
# in the same run, ONNX Runtime's own batch-128 throughput on the same file.
#
#   bash scripts/measure-serve.sh [SECONDS]      (needs Debian's wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
bash scripts/setup.sh >/dev/null
# The export is the same file whatever the profile: the test profile's train will do.
cargo build -q -p cifar-train --bin train
cargo build --release -q -p cifar-serve --bin serve --example ort_throughput
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/models"
target/debug/train export --model resnet-light --out "$work/models/resnet-light.onnx" >/dev/null 2>&1
# A small PNG: a 32×32 picture, as a client of a CIFAR model would send.
.venv-tools/bin/python - "$work/img.png" <<'PY'
import struct, sys, zlib
w = h = 32
rows = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 8 % 256, y * 8 % 256, (x * y) % 256)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
target/release/serve --models "$work/models" --bind 127.0.0.1:0 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 600); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/out")
echo "serve at $url, $(nproc) cores, PNG of $(stat -c %s "$work/img.png") bytes"
WRK_IMAGE="$work/img.png" wrk -t2 -c64 -d"${secs}s" --latency -s scripts/wrk-classify.lua "$url/v1/classify"
curl -s "$url/metrics" | grep -E '^cifar_serve_batch_size_(sum|count)' || true
kill -TERM "$pid"; wait "$pid" || true
echo "ONNX Runtime alone, same file:"
target/release/examples/ort_throughput "$work/models/resnet-light.onnx" 128 "$secs"
