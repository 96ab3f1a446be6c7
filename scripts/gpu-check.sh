#!/usr/bin/env bash
# One call on a lent GPU machine (no network, no Rust; see README "GPU (CUDA)"): the CUDA
# training speed of all seven models, ours beside that machine's own PyTorch, in about 6 min.
#
#   scripts/gpu-check.sh [BIN_DIR]     BIN_DIR defaults to dist/gpu (scripts/build-gpu-bins.sh)
#
# Steps, each bounded in time and recorded whatever happens (a failed step does not stop the
# others), in order of importance so that a short lease still answers the main question:
#   1. nvidia-smi: the GPU and the driver's CUDA version;
#   2. the PTX of each carried `train` against that driver (scripts/check-ptx.sh);
#   3. ours: `train speed` for the seven models (50 steps at batch 128 after 5 of warm-up),
#      f32 and bf16, with each carried build (train-cuda; train-cudnn with cuDNN convolutions);
#   4. PyTorch: the same models and step (benches/scripts/torch_step.py), eager f32 and bf16
#      autocast with channels_last;
#   5. one short training run end to end (train -> ONNX export -> parity on ONNX Runtime's CPU
#      provider when its library travelled), then the exported graph in that machine's own
#      onnxruntime (scripts/onnx_accuracy.py): the same test accuracy as the run measured;
#   6. ONNX Runtime's CUDA execution provider for serving: recorded as unavailable (its library
#      is hundreds of MB and the machine has no network), not attempted.
# The data is synthetic (the real set cannot travel): these are speed figures, not accuracies.
# Results in $OUT (the device tool's folder) or gpu-check/: gpu-check.json (everything),
# gpu-check.md (the ours / PyTorch table), gpu-check.log, nvidia-smi.txt.
#
# GPU_CHECK_DRY_RUN=1 runs every step on the CPU at toy sizes with the binaries in BIN_DIR
# (e.g. target/debug): CI's check that the script and its JSON work where no GPU is.
# Env: GPU_CHECK_DEADLINE (s, default 420) bounds the whole call; PYTHON (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$(realpath "${1:-dist/gpu}")
OUT=$(realpath -m "${OUT:-gpu-check}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
DRY=${GPU_CHECK_DRY_RUN:-}
DEADLINE=${GPU_CHECK_DEADLINE:-420}
T0=$(date +%s)
: > "$OUT/gpu-check.log"
log() { printf '[gpu-check %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/gpu-check.log" >&2; }
STEPS="$WORK/steps.jsonl"; : > "$STEPS"
record() { # step status seconds detail
  "$PYTHON" -c 'import json,sys; print(json.dumps({"step":sys.argv[1],"status":sys.argv[2],"seconds":int(sys.argv[3]),"detail":sys.argv[4]}))' "$@" >> "$STEPS"
}
# The time a step may take: its cap, or what is left before the deadline (0: skip it).
budget() { local left=$(( DEADLINE - ($(date +%s) - T0) - 15 )); (( left < 10 )) && echo 0 || echo $(( $1 < left ? $1 : left )); }
# run STEP CAP LOGFILE CMD...: runs CMD bounded by the step's budget and records the outcome.
run() {
  local name=$1 cap; cap=$(budget "$2"); local logf=$3; shift 3
  if [ "$cap" = 0 ]; then record "$name" "skipped" 0 "out of time (GPU_CHECK_DEADLINE=$DEADLINE)"; return 1; fi
  local t=$(date +%s) rc=0
  local errf="$WORK/$name.err"
  timeout "$cap" "$@" > "$logf" 2> "$errf" || rc=$?
  tail -n 20 "$errf" | sed "s/^/[$name] /" >> "$OUT/gpu-check.log"
  if [ $rc = 0 ]; then record "$name" ok $(( $(date +%s) - t )) "$(tail -n 1 "$logf" | cut -c1-200)"
  elif [ $rc = 124 ]; then record "$name" "timeout" $(( $(date +%s) - t )) "stopped after ${cap}s; results so far kept"
  else record "$name" "failed(rc=$rc)" $(( $(date +%s) - t )) "$(tail -n 3 "$errf" | tr '\n' ' ')"; fi
  return $rc
}

# The CUDA user-space libraries (runtime, cuBLAS, cuRAND, cuDNN) from that Python's nvidia-*
# packages: the machine has them there rather than in the system paths.
for sp in $("$PYTHON" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
  for d in "$sp"/nvidia/*/lib "$sp"/nvidia/cu13/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
done
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"

# What travelled: `train-<variant>` binaries and the ONNX Runtime library, possibly xz-packed.
unpack() { "$PYTHON" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; }
TRAINS=()
for f in "$BIN"/train-*; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .xz)
  case "$f" in *.xz) unpack "$f" "$WORK/$name" ;; *) cp "$f" "$WORK/$name" ;; esac
  chmod +x "$WORK/$name"; TRAINS+=("$WORK/$name")
done
# A plain `train` (the dry run's CPU build) when no variant travelled.
[ ${#TRAINS[@]} -gt 0 ] || { [ -x "$BIN/train" ] && cp "$BIN/train" "$WORK/train-cpu" && TRAINS+=("$WORK/train-cpu"); }
[ ${#TRAINS[@]} -gt 0 ] || { log "no train-* or train in $BIN: run scripts/build-gpu-bins.sh first"; exit 1; }
ORT_LIB=""
for f in "$BIN"/libonnxruntime.so.1.31.1.xz "$BIN"/libonnxruntime.so.1.31.1 "$ROOT/.ort/cpu/libonnxruntime.so.1.31.1"; do
  [ -e "$f" ] || continue
  case "$f" in *.xz) unpack "$f" "$WORK/libonnxruntime.so.1.31.1" && ORT_LIB="$WORK/libonnxruntime.so.1.31.1" ;; *) ORT_LIB=$f ;; esac
  break
done

if [ -n "$DRY" ]; then
  MODE=dry-run; DEVICE=cpu; PRECISIONS=(f32); SIZES=(--batch-size 8 --steps 2 --warmup 1); TORCH_SIZES=(--batch 8 --iters 2 --warmup 1)
else
  MODE=gpu; DEVICE=cuda; PRECISIONS=(f32 bf16); SIZES=(--batch-size 128 --steps 50 --warmup 5); TORCH_SIZES=(--batch 128 --iters 50 --warmup 5)
fi
log "mode: $MODE; builds: ${TRAINS[*]##*/}; ORT library: ${ORT_LIB:-none}"

log "1/6 nvidia-smi"
DRIVER_CUDA=13.0
if [ -n "$DRY" ]; then
  record nvidia-smi skipped 0 "dry run"
elif run nvidia-smi 30 "$OUT/nvidia-smi.txt" nvidia-smi; then
  DRIVER_CUDA=$(grep -o 'CUDA Version: [0-9.]*' "$OUT/nvidia-smi.txt" | grep -o '[0-9.]*$' || echo 13.0)
  record gpu ok 0 "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1), CUDA $DRIVER_CUDA"
fi

log "2/6 PTX of each build against a CUDA $DRIVER_CUDA driver"
for t in "${TRAINS[@]}"; do
  if [ -n "$DRY" ]; then record "ptx-${t##*/}" skipped 0 "dry run: a CPU build has no PTX"; continue; fi
  run "ptx-${t##*/}" 60 "$WORK/ptx-${t##*/}.txt" bash scripts/check-ptx.sh --driver-cuda "$DRIVER_CUDA" "$t"
done

ours() { # build precision
  local b=${1##*/}
  log "3/6 ours: $b $2"
  run "ours-$b-$2" 150 "$WORK/ours-$b-$2.jsonl" "$1" speed --models all --device "$DEVICE" --precision "$2" "${SIZES[@]}"
}
torch() { # precision
  log "4/6 PyTorch $1"
  local extra=(); [ "$1" = bf16 ] && extra=(--amp bf16 --channels-last)
  if ! "$PYTHON" -c 'import torch' 2>/dev/null; then record "torch-$1" skipped 0 "no PyTorch in $PYTHON"; return; fi
  run "torch-$1" 120 "$WORK/torch-$1.jsonl" "$PYTHON" benches/scripts/torch_step.py --models all --device "$DEVICE" "${TORCH_SIZES[@]}" "${extra[@]}"
}
# The first build with both precisions and PyTorch beside it, then the end-to-end run, then the
# other builds: the most important answers first.
for p in "${PRECISIONS[@]}"; do ours "${TRAINS[0]}" "$p"; torch "$p"; done

log "5/6 a short synthetic run end to end"
"${TRAINS[0]}" synthetic --out "$WORK/synthetic" >> "$OUT/gpu-check.log" 2>&1
E2E=(--model resnet-light --epochs 1 --limit-train 2048 --limit-eval 512 --device "$DEVICE" --data-dir "$WORK/synthetic" --out "$WORK/e2e" --quiet)
[ -n "$DRY" ] && E2E=(--model resnet-light --epochs 1 --limit-train 64 --limit-eval 32 --batch-size 16 --device cpu --data-dir "$WORK/synthetic" --out "$WORK/e2e" --quiet)
if [ -n "$ORT_LIB" ]; then E2E+=(--ort-lib "$ORT_LIB"); fi
run e2e 120 "$WORK/e2e.txt" "${TRAINS[0]}" "${E2E[@]}"
cp "$WORK/e2e/resnet-light/summary.json" "$WORK/e2e-summary.json" 2>/dev/null
# The exported graph in this machine's own onnxruntime (CPU, any version): it must classify the
# test images as the run on $DEVICE did. This is the export's check when ONNX Runtime 1.31 did
# not travel (the run then skips its parity check); beside it otherwise.
if [ ! -e "$WORK/e2e-summary.json" ]; then
  record e2e-onnx skipped 0 "no finished end-to-end run"
elif ! "$PYTHON" -c 'import onnxruntime, numpy' 2>/dev/null; then
  record e2e-onnx skipped 0 "no onnxruntime/numpy in $PYTHON"
else
  run e2e-onnx 60 "$WORK/e2e-onnx.json" "$PYTHON" scripts/onnx_accuracy.py "$WORK/e2e/resnet-light" "$WORK/synthetic"
fi

for t in "${TRAINS[@]:1}"; do for p in "${PRECISIONS[@]}"; do ours "$t" "$p"; done; done

log "6/6 ONNX Runtime's CUDA execution provider"
record serve-cuda unavailable 0 "not attempted: onnxruntime-gpu (hundreds of MB) cannot travel within the 64 MiB carry and the machine has no network"

"$PYTHON" scripts/gpu_check_report.py "$WORK" "$OUT" "$MODE" "$DRIVER_CUDA"
log "done in $(( $(date +%s) - T0 ))s: $OUT/gpu-check.json, $OUT/gpu-check.md"
