#!/usr/bin/env bash
# Source me: makes nvcc and the CUDA 13 headers available to candle's build scripts without a
# system CUDA install, from the PyPI wheels, in the git-ignored .cuda/ folder (fetched once,
# reused afterwards). Sets CUDA_HOME/CUDA_PATH/CUDA_ROOT, PATH and CUDA_COMPUTE_CAP.
#
#   . scripts/cuda-env.sh            # then: cargo build --release --features cuda ...
#
# The toolkit is CUDA 13.0, the oldest 13.x: candle embeds its kernels as PTX, which the GPU's
# driver compiles when a kernel is first loaded, and a driver only accepts the PTX ISA of its
# own CUDA version or older (CUDA 13.0 writes PTX 9.0, 13.4 writes 9.4). The lent GPU machines
# run a CUDA 13.0 driver (580), so kernels built with a newer nvcc would not load there;
# scripts/check-ptx.sh checks the built PTX. cudarc 0.19 (under candle 0.11) binds to the
# version nvcc reports. CUDA_WHEELS=13.4 (say) picks another toolkit, into its own folder.
# CUDA_COMPUTE_CAP defaults to 90 (H100/H200); set it first for another GPU (80 = A100).
_cuda_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_cuda_ver="${CUDA_WHEELS:-13.0}"
case "$_cuda_ver" in
  13.0) _cuda_pins=("nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-crt==13.0.88"
                    "nvidia-nvvm==13.0.88" "nvidia-cuda-cccl==13.0.85") ;;
  13.4) _cuda_pins=("nvidia-cuda-nvcc==13.4.*" "nvidia-cuda-runtime==13.4.*" "nvidia-cuda-crt==13.4.*"
                    "nvidia-nvvm==13.4.*" "nvidia-cuda-cccl==13.3.5.0.6") ;;
  *) printf '[cuda-env] CUDA_WHEELS=%s: this script knows 13.0 and 13.4\n' "$_cuda_ver" >&2; return 2 2>/dev/null || exit 2 ;;
esac
_cuda_site="$_cuda_root/.cuda/$_cuda_ver/site"
_cuda_home="$_cuda_site/nvidia/cu13"
if [ ! -x "$_cuda_home/bin/nvcc" ] || [ ! -f "$_cuda_home/include/cuda_runtime.h" ] || [ ! -d "$_cuda_home/nvvm" ]; then
  printf '[cuda-env] fetching nvcc, runtime headers, crt, nvvm and cccl %s from PyPI into .cuda/%s/\n' "$_cuda_ver" "$_cuda_ver"
  python3 -m pip install -q --disable-pip-version-check --no-deps --upgrade --target "$_cuda_site" \
    "${_cuda_pins[@]}" || return 1 2>/dev/null || exit 1
fi
export CUDA_HOME="$_cuda_home" CUDA_PATH="$_cuda_home" CUDA_ROOT="$_cuda_home"
export PATH="$_cuda_home/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
unset _cuda_root _cuda_ver _cuda_pins _cuda_site _cuda_home
