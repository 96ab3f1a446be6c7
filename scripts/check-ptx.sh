#!/usr/bin/env bash
# Checks that the CUDA kernels a build carries are PTX a given driver can load. candle embeds
# its kernels as PTX text; the driver compiles PTX to the GPU's code when a kernel is first
# loaded, and refuses a PTX ISA newer than its own CUDA version writes (CUDA 13.0 writes and
# accepts PTX 9.0; 13.4 writes 9.4, which a 13.0 driver cannot load).
#
#   scripts/check-ptx.sh [--driver-cuda X.Y] PATH...
#
# PATH: a binary (the PTX inside it is found by its `.version` lines), a .ptx file, or a folder
# (searched for .ptx files, e.g. target/debug/build/ after a `cargo check --features cuda`).
# --driver-cuda defaults to 13.0, the lent GPU machines' driver (580). Prints each PTX ISA
# version found and how many kernel modules have it; exits 1 when one is too new for the
# driver or when no PTX is found at all (a build without CUDA is not what travels), 2 on bad
# usage.
set -euo pipefail
driver=13.0
if [ "${1:-}" = "--driver-cuda" ]; then driver=${2:?--driver-cuda needs X.Y}; shift 2; fi
[ $# -gt 0 ] || { echo "usage: check-ptx.sh [--driver-cuda X.Y] PATH..." >&2; exit 2; }
exec python3 - "$driver" "$@" <<'PY'
import collections, pathlib, re, sys

# The PTX ISA each CUDA version writes, and so the newest its driver loads (PTX ISA release notes).
PTX_OF_CUDA = {
    (12, 0): (8, 0), (12, 1): (8, 1), (12, 2): (8, 2), (12, 3): (8, 3), (12, 4): (8, 4),
    (12, 5): (8, 5), (12, 6): (8, 5), (12, 8): (8, 7), (12, 9): (8, 8),
    (13, 0): (9, 0), (13, 1): (9, 1), (13, 2): (9, 2), (13, 3): (9, 3), (13, 4): (9, 4),
}
driver_arg, paths = sys.argv[1], sys.argv[2:]
try:
    driver = tuple(int(p) for p in driver_arg.split("."))
    limit = PTX_OF_CUDA[driver]
except (ValueError, KeyError):
    sys.exit(f"check-ptx: --driver-cuda {driver_arg}: known CUDA versions are "
             + ", ".join(f"{a}.{b}" for a, b in sorted(PTX_OF_CUDA)))
VERSION = re.compile(rb"(?m)^\.version (\d+)\.(\d+)\s*$")

def files(path):
    p = pathlib.Path(path)
    if p.is_dir():
        yield from sorted(p.rglob("*.ptx"))
    elif p.exists():
        yield p
    else:
        sys.exit(f"check-ptx: {path}: no such file or folder")

found, bad = collections.Counter(), []
for path in paths:
    for f in files(path):
        for m in VERSION.finditer(f.read_bytes()):
            v = (int(m[1]), int(m[2]))
            found[v] += 1
            if v > limit:
                bad.append((f, v))
for v, n in sorted(found.items()):
    print(f"PTX ISA {v[0]}.{v[1]}: {n} kernel module(s)")
if not found:
    sys.exit(f"check-ptx: no PTX in {' '.join(paths)} (built without CUDA?)")
if bad:
    f, v = bad[0]
    sys.exit(f"check-ptx: {len(bad)} module(s) need PTX ISA {v[0]}.{v[1]} (first in {f}), newer than the "
             f"{limit[0]}.{limit[1]} a CUDA {driver_arg} driver loads: build with that toolkit (scripts/cuda-env.sh)")
print(f"ok: every module loads on a CUDA {driver_arg} driver (PTX ISA <= {limit[0]}.{limit[1]})")
PY
