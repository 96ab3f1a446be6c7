#!/usr/bin/env bash
# One-shot GPU check, for a GPU machine without a Rust toolchain: the binaries are built
# elsewhere (scripts/build-gpu-bins.sh → dist/gpu/) and carried over. In about 8 minutes:
#   1. nvidia-smi;
#   2. one epoch of resnet-light and one of resnet-heavy on CUDA (f32), and one of resnet-light
#      in bf16, with img/s — real CIFAR-10 when DATA_DIR (or ../shared/data/...) has it,
#      a synthetic set otherwise;
#   3. the trained resnet-light exported (the trainer does it), served with ONNX Runtime's CUDA
#      execution provider (onnxruntime-gpu==1.31.1) and its latency benchmark;
#   4. one JSON summary: $OUT/gpu-check.json.
#
#   scripts/gpu-check.sh [BIN_DIR]        BIN_DIR defaults to dist/gpu; results go to $OUT
#                                         (the device tool's folder) or gpu-check/.
#   env: DATA_DIR, ORT_GPU_LIB (path to libonnxruntime.so.1.31.1 of onnxruntime-gpu),
#        EPOCH_TIMEOUT (s, default 150), LIMIT_TRAIN (images per epoch, default all 45,000).
# Every step is bounded and recorded; a failing step does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-dist/gpu}")
OUT=$(realpath -m "${OUT:-gpu-check}")
mkdir -p "$OUT"
EPOCH_TIMEOUT=${EPOCH_TIMEOUT:-150}
log() { printf '[gpu-check %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/gpu-check.log" >&2; }
STEPS="$OUT/steps.jsonl"; : > "$STEPS"
step() { # name status seconds detail
  python3 -c 'import json,sys; print(json.dumps({"step":sys.argv[1],"status":sys.argv[2],"seconds":float(sys.argv[3]),"detail":sys.argv[4]}))' "$@" >> "$STEPS"
}

# CUDA user-space libraries (cuBLAS, cuRAND, cuDNN, the CUDA runtime) from pip wheels when the
# machine has them there rather than in the system paths.
for sp in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
  for d in "$sp"/nvidia/*/lib "$sp"/nvidia/cu13/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"

t0=$(date +%s)
log "1/4 nvidia-smi"
if timeout 30 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; then
  step nvidia-smi ok $(( $(date +%s) - t0 )) "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
else
  step nvidia-smi failed $(( $(date +%s) - t0 )) "nvidia-smi failed (no GPU or driver?)"
fi

DATA=${DATA_DIR:-../shared/data/cifar-10-batches-bin}
DATA_KIND=real
if [ ! -f "$DATA/data_batch_1.bin" ]; then
  DATA="$OUT/synthetic"; DATA_KIND=synthetic
  log "no CIFAR-10 at ${DATA_DIR:-../shared/data/cifar-10-batches-bin}: writing a synthetic set"
  "$BIN/train" synthetic --out "$DATA" >> "$OUT/gpu-check.log" 2>&1
fi

LIMIT=(); [ -n "${LIMIT_TRAIN:-}" ] && LIMIT=(--limit-train "$LIMIT_TRAIN")
train_one() { # model precision tag
  local t=$(date +%s) runs="$OUT/runs-$3"
  log "2/4 one epoch of $1 on CUDA ($2)"
  rm -rf "$runs"
  if timeout "$EPOCH_TIMEOUT" "$BIN/train" --model "$1" --epochs 1 --device cuda --precision "$2" \
      --data-dir "$DATA" --out "$runs" "${LIMIT[@]}" --ort-lib "$PWD/.ort/cpu/libonnxruntime.so.1.31.1" \
      > "$OUT/train-$3.log" 2>&1; then
    step "train-$3" ok $(( $(date +%s) - t )) "$runs/$1/summary.json"
  else
    step "train-$3" "failed(rc=$?)" $(( $(date +%s) - t )) "$(tail -3 "$OUT/train-$3.log" | tr '\n' ' ')"
  fi
}
train_one resnet-light f32 resnet-light
train_one resnet-heavy f32 resnet-heavy
train_one resnet-light bf16 resnet-light-bf16

log "3/4 ONNX Runtime with the CUDA execution provider"
ORT_GPU=${ORT_GPU_LIB:-}
if [ -z "$ORT_GPU" ]; then
  ORT_GPU=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import onnxruntime
    d = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
    hits = glob.glob(os.path.join(d, "libonnxruntime.so.1.31.1"))
    if hits and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        print(hits[0])
except Exception:
    pass
PY
)
fi
if [ -z "$ORT_GPU" ] && [ -f .ort/cuda/libonnxruntime.so.1.31.1 ]; then ORT_GPU=$PWD/.ort/cuda/libonnxruntime.so.1.31.1; fi
if [ -z "$ORT_GPU" ]; then
  t=$(date +%s); tmp=$(mktemp -d)
  if timeout 120 python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime-gpu==1.31.1" -d "$tmp" >/dev/null 2>&1; then
    mkdir -p .ort/cuda
    python3 - "$tmp" .ort/cuda <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with zipfile.ZipFile(next(src.glob("onnxruntime_gpu-*.whl"))) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/libonnxruntime") and ".so" in n:
            (dst / pathlib.Path(n).name).write_bytes(z.read(n))
PY
    ORT_GPU=$PWD/.ort/cuda/libonnxruntime.so.1.31.1
  fi
  rm -rf "$tmp"
  step ort-gpu-fetch "$([ -n "$ORT_GPU" ] && echo ok || echo unavailable)" $(( $(date +%s) - t )) "onnxruntime-gpu==1.31.1 from PyPI"
fi

MODELS="$OUT/models"; mkdir -p "$MODELS"
[ -f "$OUT/runs-resnet-light/resnet-light/model.onnx" ] && cp "$OUT/runs-resnet-light/resnet-light/model.onnx" "$MODELS/resnet-light.onnx"
[ -f "$MODELS/resnet-light.onnx" ] || "$BIN/train" export --model resnet-light --out "$MODELS/resnet-light.onnx" --skip-parity >> "$OUT/gpu-check.log" 2>&1
if [ -n "$ORT_GPU" ] && [ -f "$ORT_GPU" ]; then
  t=$(date +%s); PORT=18080
  "$BIN/serve" --models "$MODELS" --device cuda --bind "127.0.0.1:$PORT" --ort-lib "$ORT_GPU" > "$OUT/serve.log" 2>&1 &
  SERVE_PID=$!
  ready=""
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
    kill -0 $SERVE_PID 2>/dev/null || break
    sleep 1
  done
  if [ -n "$ready" ]; then
    curl -sf "http://127.0.0.1:$PORT/v1/models" > "$OUT/models.json"
    curl -sf -m 120 "http://127.0.0.1:$PORT/v1/models/resnet-light/benchmark?batch_sizes=1,8,32,128&iters=50" > "$OUT/benchmark-cuda.json" \
      && step serve-cuda ok $(( $(date +%s) - t )) "$OUT/benchmark-cuda.json" \
      || step serve-cuda "benchmark-failed" $(( $(date +%s) - t )) "$(tail -3 "$OUT/serve.log" | tr '\n' ' ')"
  else
    step serve-cuda "not-ready" $(( $(date +%s) - t )) "$(tail -3 "$OUT/serve.log" | tr '\n' ' ')"
  fi
  kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null
else
  step serve-cuda skipped 0 "no onnxruntime-gpu 1.31.1 library (set ORT_GPU_LIB)"
fi

log "4/4 summary"
python3 - "$OUT" "$DATA_KIND" <<'PY'
import json, pathlib, sys
out, data_kind = pathlib.Path(sys.argv[1]), sys.argv[2]
steps = [json.loads(l) for l in (out / "steps.jsonl").read_text().splitlines() if l.strip()]
def load(p):
    try:
        return json.loads(pathlib.Path(p).read_text())
    except Exception:
        return None
runs = {}
for tag in ["resnet-light", "resnet-heavy", "resnet-light-bf16"]:
    model = tag.replace("-bf16", "")
    s = load(out / f"runs-{tag}" / model / "summary.json")
    if s:
        runs[tag] = {k: s.get(k) for k in ["model", "device", "precision", "data_on_device", "mean_train_img_s",
                                          "train_seconds", "best_val_acc", "test_acc", "onnx_parity_max_abs_diff"]}
smi = (out / "nvidia-smi.txt").read_text() if (out / "nvidia-smi.txt").exists() else ""
summary = {"schema_version": 1, "data": data_kind, "gpu": next((s["detail"] for s in steps if s["step"] == "nvidia-smi"), None),
           "training": runs, "serve_benchmark": load(out / "benchmark-cuda.json"), "steps": steps}
(out / "gpu-check.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
PY
log "done in $(( $(date +%s) - t0 ))s: $OUT/gpu-check.json"
