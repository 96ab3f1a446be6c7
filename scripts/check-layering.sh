#!/usr/bin/env bash
# The layering rule of DESIGN.md that the compiler cannot see: `serve`, built on its own, links
# no candle (it needs only ONNX files and the models crate's description-level facts), and
# `models` never depends on `train` or `serve`. Reads the resolved dependency graph only
# (`cargo tree`), so it takes seconds and builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
tree() { cargo tree --locked -p "$1" -e normal,build --prefix none --format '{p}' "${@:2}" | awk '{print $1}' | sort -u; }

candle=$(tree cifar-serve | grep -E '^candle' || true)
if [ -n "$candle" ]; then
  echo "layering: cifar-serve built on its own links candle crates:" $candle >&2
  fail=1
fi
for up in cifar-train cifar-serve; do
  if tree cifar-models | grep -qx "$up"; then
    echo "layering: cifar-models depends on $up" >&2
    fail=1
  fi
done
if tree cifar-serve | grep -qx cifar-train; then
  echo "layering: cifar-serve depends on cifar-train" >&2
  fail=1
fi
if tree cifar-train | grep -qx cifar-serve; then
  echo "layering: cifar-train depends on cifar-serve" >&2
  fail=1
fi
[ "$fail" -eq 0 ] && echo "layering: ok (serve links no candle; models, train and serve point only downwards)"
exit "$fail"
