#!/usr/bin/env bash
# Creates .venv-torch at the repository root with a CPU PyTorch, for the side-by-side harness
# (benches/src/bin/step_compare.rs). Optional: the harness times our models alone without it.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-torch"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# The CPU-only wheel index is much smaller; where it cannot be reached, PyPI's default wheel
# (which pulls the CUDA runtime packages too) runs on CPU just the same.
if ! "$venv/bin/pip" install --quiet --timeout 20 torch numpy --index-url https://download.pytorch.org/whl/cpu; then
    "$venv/bin/pip" install --quiet torch numpy
fi
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "threads", torch.get_num_threads())'
