#!/usr/bin/env bash
# Source me: makes nvcc and the CUDA 13 headers available to candle's build scripts without a
# system CUDA install, from the PyPI wheels, in the git-ignored .cuda/ folder (fetched once,
# reused afterwards). Sets CUDA_HOME/CUDA_PATH/CUDA_ROOT, PATH and CUDA_COMPUTE_CAP.
#
#   . scripts/cuda-env.sh            # then: cargo build --release --features cuda ...
#
# Versions: cudarc 0.19 (under candle 0.11) knows CUDA up to 13.4, hence the pins.
# CUDA_COMPUTE_CAP defaults to 90 (H100/H200); set it first for another GPU (80 = A100).
_cuda_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cuda_home="$_cuda_root/.cuda/site/nvidia/cu13"
if [ ! -x "$_cuda_home/bin/nvcc" ] || [ ! -f "$_cuda_home/include/cuda_runtime.h" ] || [ ! -d "$_cuda_home/nvvm" ]; then
  printf '[cuda-env] fetching nvcc, runtime headers, crt, nvvm and cccl 13.4 from PyPI into .cuda/\n'
  python3 -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$_cuda_root/.cuda/site" \
    "nvidia-cuda-nvcc==13.4.*" "nvidia-cuda-runtime==13.4.*" "nvidia-cuda-crt==13.4.*" \
    "nvidia-nvvm==13.4.*" "nvidia-cuda-cccl==13.3.5.0.6" || return 1 2>/dev/null || exit 1
fi
export CUDA_HOME="$_cuda_home" CUDA_PATH="$_cuda_home" CUDA_ROOT="$_cuda_home"
export PATH="$_cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
unset _cuda_root _cuda_home
