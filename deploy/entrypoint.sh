#!/bin/sh
# The container's entrypoint: `serve` configured from the environment, as `serve` itself reads
# it (SERVE_MODELS, SERVE_BIND, SERVE_GRPC_BIND, SERVE_API_KEY_FILE, SERVE_DEVICE, …; see
# `serve --help`), with the container's defaults and checks that fail with a clear message.
#
#   SERVE_MODELS         models folder (default /models: the volume)
#   SERVE_BIND           HTTP address (default 0.0.0.0:8080)
#   SERVE_DEFAULT_MODEL  default model; unset: the folder's DEFAULT file if there is one
#   ORT_DYLIB_PATH       the ONNX Runtime library (set by the image)
#   SERVE_BIN            the binary (default: serve on PATH; for running this script outside
#                        a container)
# Extra arguments are passed to `serve`.
set -eu

export SERVE_MODELS="${SERVE_MODELS:-/models}"
export SERVE_BIND="${SERVE_BIND:-0.0.0.0:8080}"
SERVE_BIN="${SERVE_BIN:-serve}"

if [ ! -d "$SERVE_MODELS" ]; then
  echo "entrypoint: the models folder $SERVE_MODELS does not exist: mount a folder of *.onnx files there (docker run -v \$PWD/model-zoo:/models:ro …) or set SERVE_MODELS" >&2
  exit 1
fi
if ! ls "$SERVE_MODELS"/*.onnx >/dev/null 2>&1; then
  echo "entrypoint: no *.onnx files in $SERVE_MODELS: mount the models there (train export writes them), or build the image with --build-arg WITH_ZOO=true" >&2
  exit 1
fi
if [ -z "${SERVE_DEFAULT_MODEL:-}" ] && [ -f "$SERVE_MODELS/DEFAULT" ]; then
  SERVE_DEFAULT_MODEL="$(tr -d '[:space:]' < "$SERVE_MODELS/DEFAULT")"
  export SERVE_DEFAULT_MODEL
fi
if [ -n "${SERVE_API_KEY_FILE:-}" ] && [ ! -r "$SERVE_API_KEY_FILE" ]; then
  echo "entrypoint: SERVE_API_KEY_FILE=$SERVE_API_KEY_FILE cannot be read (mount the Secret there)" >&2
  exit 1
fi

# exec: serve is PID 1's only child no more; it gets SIGTERM directly and drains.
exec "$SERVE_BIN" "$@"
