#!/usr/bin/env bash
# Source me after scripts/cuda-env.sh, before linking a CUDA build: candle links cudarc with
# `dynamic-linking`, so the linker wants libcuda, libnvrtc, libcurand, libcublas(Lt), libcudart
# and (cuDNN builds) libcudnn. Only libcudart comes with the nvcc wheels; the driver's libcuda
# exists only where a GPU is, and the others are wheels of hundreds of MB. What the binary
# needs at link time is each library's SONAME and symbols: this writes stub libraries with
# exactly that (every function cudarc 0.19 declares for it, as an empty body) into
# $CUDA_HOME/lib, the folder cudarc's build script gives the linker. The binary then names
# libcuda.so.1, libcublas.so.13 … and the GPU machine's real libraries (its driver, its
# Python's nvidia-* packages on LD_LIBRARY_PATH) are the ones loaded when it runs.
set -euo pipefail
_stub_lib="${CUDA_HOME:?source scripts/cuda-env.sh first}/lib"
_cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1)
[ -d "$_cudarc" ] || { echo "[cuda-link-stubs] cudarc 0.19 sources not found: run cargo fetch first" >&2; return 1 2>/dev/null || exit 1; }
ln -sf libcudart.so.13 "$_stub_lib/libcudart.so"
# module of cudarc, library name, SONAME of the CUDA 13 library (cuRAND keeps its major 10).
while read -r module name soname; do
  [ -f "$_stub_lib/lib$name.so" ] && continue
  grep -oE '^pub unsafe fn [A-Za-z_0-9]+' "$_cudarc/src/$module/sys/mod.rs" | sort -u \
    | awk '{ print "void " $4 "(void) {}" }' > "$_stub_lib/lib$name.stub.c"
  cc -shared -fPIC -o "$_stub_lib/lib$name.so" -Wl,-soname,"$soname" "$_stub_lib/lib$name.stub.c"
  rm "$_stub_lib/lib$name.stub.c"
done <<'EOF'
driver cuda libcuda.so.1
nvrtc nvrtc libnvrtc.so.13
curand curand libcurand.so.10
cublas cublas libcublas.so.13
cublaslt cublasLt libcublasLt.so.13
cudnn cudnn libcudnn.so.9
EOF
unset _stub_lib _cudarc
