#!/usr/bin/env bash
# Builds the `serve` image OFFLINE with podman and checks the running container: for machines
# that reach Debian's apt mirror but no container registry (so `docker build -f deploy/Dockerfile`
# cannot pull rust:, python: or debian:bookworm-slim).
#
# What it does, and why:
#   1. The base image: a minbase Debian bookworm root filesystem made by mmdebstrap from the apt
#      mirror (minbase is what debian:bookworm-slim is made of), docs/man pages/locales left out as
#      the slim images do, imported as localhost/debian:bookworm-slim-offline. Made once; later
#      runs reuse it (CHECK_REBUILD_BASE=1 makes it again).
#   2. The image: a Containerfile generated in a temporary folder whose steps are those of
#      deploy/Dockerfile's runtime stage (user 10001, serve, the ONNX Runtime library, the
#      entrypoint, ENV, VOLUME, EXPOSE, USER, ENTRYPOINT), FROM that base. Instead of the build and
#      ort stages it copies what the host already built: the serve binary (debug info stripped,
#      as a release build has none) and .ort/cpu/libonnxruntime.so.<version>. ORT_VERSION is read
#      from deploy/Dockerfile so the two cannot drift. Nothing is pulled (--pull=never).
#   3. The checks, on a container run like production: models mounted read-only at /models,
#      --read-only root filesystem with a tmpfs /tmp, port 8080 published on 127.0.0.1:PORT.
#      Each check prints PASS or FAIL; the script exits 1 if any failed.
#
# Usage (from anywhere; run as root, podman rootful):
#   deploy/check-image.sh [--bin PATH] [--port N]
#
# Environment (all optional):
#   CHECK_BIN           serve binary to put in the image   (default target/release/serve if it
#                       exists, else target/debug/serve)
#   CHECK_PORT          host port for the container's 8080 (default 18080)
#   CHECK_ORT_LIB       ONNX Runtime library               (default .ort/cpu/libonnxruntime.so.<v>)
#   CHECK_MODELS        models folder mounted at /models    (default model-zoo)
#   CHECK_IMAGE         tag of the image built              (default localhost/cifar-serve:offline-check)
#   CHECK_BASE_IMAGE    tag of the base image               (default localhost/debian:bookworm-slim-offline)
#   CHECK_REBUILD_BASE  1: make the base image again even if it exists
#   CHECK_MIRROR        Debian mirror                       (default http://deb.debian.org/debian)
#   CHECK_SECURITY_MIRROR  security mirror                  (default http://deb.debian.org/debian-security)
#   CHECK_RUNTIME       OCI runtime (crun, runc)            (default: the first that works here)
#   CHECK_NETWORK       bridge (publish the port) or host   (default bridge, host if bridge fails)
#   CHECK_EXPECT_LABEL  top label expected for model-zoo/cat.png (default cat; empty: any label)
#   CHECK_READY_TIMEOUT seconds to wait for readiness       (default 180)
#   CHECK_STRIP         0: keep the binary's debug info     (default 1)
#   CHECK_REMOVE_IMAGE  1: remove the built image at the end (the base image is always kept)
#   CHECK_INSTALL       0: never apt-get install missing tools (default: install them if root)
#   CHECK_SKIP_UNSUPPORTED  1: where no container can run at all (not root, no podman from apt, no
#                       apt mirror, a sandbox that refuses every runtime), print SKIP and exit 0
#                       instead of failing (.ci/run: the entrypoint test then stands in for it)
#
# Needs: podman (+ runc or crun), curl, python3, and, the first time, mmdebstrap and the apt mirror.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

while (($#)); do
  case "$1" in
    --bin) CHECK_BIN="$2"; shift 2 ;;
    --port) CHECK_PORT="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

ORT_VERSION=$(sed -n 's/^ARG ORT_VERSION=//p' deploy/Dockerfile | head -n1)
[ -n "$ORT_VERSION" ] || { echo "check-image: no ARG ORT_VERSION= in deploy/Dockerfile" >&2; exit 2; }

if [ -z "${CHECK_BIN:-}" ]; then
  CHECK_BIN=target/debug/serve
  [ -x target/release/serve ] && CHECK_BIN=target/release/serve
fi
CHECK_PORT=${CHECK_PORT:-18080}
CHECK_ORT_LIB=${CHECK_ORT_LIB:-.ort/cpu/libonnxruntime.so.$ORT_VERSION}
CHECK_MODELS=${CHECK_MODELS:-model-zoo}
CHECK_IMAGE=${CHECK_IMAGE:-localhost/cifar-serve:offline-check}
CHECK_BASE_IMAGE=${CHECK_BASE_IMAGE:-localhost/debian:bookworm-slim-offline}
CHECK_MIRROR=${CHECK_MIRROR:-http://deb.debian.org/debian}
CHECK_SECURITY_MIRROR=${CHECK_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CHECK_NETWORK=${CHECK_NETWORK:-auto}
CHECK_EXPECT_LABEL=${CHECK_EXPECT_LABEL-cat}
CHECK_READY_TIMEOUT=${CHECK_READY_TIMEOUT:-180}
CHECK_STRIP=${CHECK_STRIP:-1}
CONTAINER=cifar-serve-offline-check
PICTURE=model-zoo/cat.png

log() { printf '[check-image] %s\n' "$*"; }
FAILED=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILED=1; }
die() { printf 'FAIL  %s\n' "$*"; exit 1; }
# The machine cannot run containers (as opposed to the image or the server failing a check).
unsupported() {
  if [ "${CHECK_SKIP_UNSUPPORTED:-0}" = 1 ]; then printf 'SKIP  %s\n' "$*"; exit 0; fi
  die "$*"
}
now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$1" "$(now)"; }

# ---- tools ---------------------------------------------------------------------------------------
# Only Debian packages, from the apt mirror. runc as well as crun: crun refuses "hybrid" cgroup
# hosts whose cgroup2 hierarchy has controllers (as in some sandboxes), runc does not.
[ "$(id -u)" -eq 0 ] || unsupported "tools: run as root (rootful podman; rootless needs subuid ranges this script does not set up)"
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v curl >/dev/null || missing+=(curl)
if ! podman image exists "$CHECK_BASE_IMAGE" 2>/dev/null || [ "${CHECK_REBUILD_BASE:-0}" = 1 ]; then
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
fi
if ((${#missing[@]})); then
  if [ "${CHECK_INSTALL:-1}" != 0 ]; then
    log "installing ${missing[*]} (Debian packages)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || unsupported "tools: apt-get install ${missing[*]} failed"
  else
    unsupported "tools: missing ${missing[*]} (apt-get install ${missing[*]}, as root)"
  fi
fi
command -v python3 >/dev/null || die "tools: python3 is needed to read the JSON answers"

for f in "$CHECK_BIN" "$CHECK_ORT_LIB" deploy/entrypoint.sh "$PICTURE"; do
  [ -f "$f" ] || die "inputs: $f is missing (build serve; bash scripts/setup.sh --ort-only for the library)"
done
ls "$CHECK_MODELS"/*.onnx >/dev/null 2>&1 || die "inputs: no *.onnx in $CHECK_MODELS"

# A port already answering would make the health check pass against the wrong server.
if (exec 3<>"/dev/tcp/127.0.0.1/$CHECK_PORT") 2>/dev/null; then
  die "inputs: 127.0.0.1:$CHECK_PORT is already in use (pick another with --port)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/check-image.XXXXXX")
cleanup() {
  podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
  [ "${CHECK_REMOVE_IMAGE:-0}" = 1 ] && podman rmi -f "$CHECK_IMAGE" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
# A container left by an interrupted run (same name) would block `podman run --name`.
podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true

# ---- 1. the base image ---------------------------------------------------------------------------
if podman image exists "$CHECK_BASE_IMAGE" && [ "${CHECK_REBUILD_BASE:-0}" != 1 ]; then
  log "base image $CHECK_BASE_IMAGE exists; reusing it (CHECK_REBUILD_BASE=1 makes it again)"
else
  log "making a minbase bookworm root filesystem with mmdebstrap from $CHECK_MIRROR"
  t0=$(now)
  # The merged-usr hooks make /bin, /lib, /sbin links into /usr as debootstrap (and so the
  # official images) does; without them mmdebstrap installs the usrmerge package, which drags in
  # ~50 MB of perl. The path-exclude options keep out what debian:*-slim images leave out (man
  # pages, docs but copyrights, translations); the last hook drops the host's
  # resolv.conf/hostname (podman provides its own at run time). "$1" there is mmdebstrap's.
  # shellcheck disable=SC2016
  nice mmdebstrap --quiet --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -f "$1"/etc/resolv.conf "$1"/etc/hostname' \
    bookworm "$WORK/rootfs.tar" \
    "deb $CHECK_MIRROR bookworm main" \
    "deb $CHECK_MIRROR bookworm-updates main" \
    "deb $CHECK_SECURITY_MIRROR bookworm-security main" >"$WORK/mmdebstrap.log" 2>&1 \
    || { tail -n 40 "$WORK/mmdebstrap.log"; unsupported "base: mmdebstrap failed (log above; is the apt mirror $CHECK_MIRROR reachable?)"; }
  old_base=$(podman image inspect --format '{{.Id}}' "$CHECK_BASE_IMAGE" 2>/dev/null || true)
  podman import --quiet --change 'CMD ["bash"]' --message "mmdebstrap --variant=minbase bookworm" \
    "$WORK/rootfs.tar" "$CHECK_BASE_IMAGE" >/dev/null || unsupported "base: podman import failed"
  rm -f "$WORK/rootfs.tar"
  # The previous base, now untagged, goes (unless an image still builds on it).
  [ -z "$old_base" ] || podman rmi "$old_base" >/dev/null 2>&1 || true
  log "base image made in $(since "$t0") s"
fi

# ---- the runtime and limits podman can use here --------------------------------------------------
# Rootful podman asks for RLIMIT_NOFILE=1048576 and a large RLIMIT_NPROC; without
# CAP_SYS_RESOURCE (sandboxes, nested containers) the runtime cannot raise them and every container
# fails with "setrlimit ...: Operation not permitted". So try podman's defaults first, then limits
# no higher than the host's (podman's own process may hold a lower RLIMIT_NPROC than this shell,
# hence the smaller fallbacks). And crun first, runc if crun cannot run on this cgroup setup.
if [ -n "${CHECK_RUNTIME:-}" ]; then
  runtimes=("$CHECK_RUNTIME")
else
  runtimes=()
  for r in crun runc; do command -v "$r" >/dev/null && runtimes+=("$r"); done
fi
hn=$(ulimit -Hn); hu=$(ulimit -Hu)
[ "$hn" = unlimited ] && hn=1048576
[ "$hu" = unlimited ] && hu=4194304
limit_sets=("")
for np in "$hu" 32768 4096; do
  [ "$np" -le "$hu" ] || continue
  limit_sets+=("--ulimit nofile=$hn:$hn --ulimit nproc=$np:$np")
done
RUNTIME_OPTS=()
probe_log="$WORK/probe.log"; : > "$probe_log"
for r in "${runtimes[@]}"; do
  for l in "${limit_sets[@]}"; do
    # shellcheck disable=SC2206  # $l is a list of options
    opts=(--runtime "$r" $l)
    if podman run --rm --pull=never --network none "${opts[@]}" "$CHECK_BASE_IMAGE" true >>"$probe_log" 2>&1; then
      RUNTIME_OPTS=("${opts[@]}"); break 2
    fi
    echo "  ^ with ${opts[*]}" >>"$probe_log"
  done
done
if ((${#RUNTIME_OPTS[@]})); then
  pass "podman runs containers here (with ${RUNTIME_OPTS[*]})"
else
  cat "$probe_log"
  unsupported "podman cannot run a container here with any of: ${runtimes[*]} (errors above)"
fi

# ---- 2. the image --------------------------------------------------------------------------------
CTX="$WORK/context"
mkdir -p "$CTX/models"        # empty: the zoo stage without WITH_ZOO; models come from the volume
cp "$CHECK_BIN" "$CTX/serve"  # a copy: a concurrent cargo build may replace the original
if [ "$CHECK_STRIP" = 1 ] && command -v strip >/dev/null; then strip --strip-debug "$CTX/serve"; fi
cp "$CHECK_ORT_LIB" "$CTX/libonnxruntime.so.$ORT_VERSION"
cp deploy/entrypoint.sh "$CTX/entrypoint.sh"
# The runtime stage of deploy/Dockerfile, with COPY --from=… replaced by the files above.
cat > "$CTX/Containerfile" <<EOF
FROM $CHECK_BASE_IMAGE
ARG ORT_VERSION=$ORT_VERSION
RUN groupadd --system --gid 10001 serve \\
 && useradd --system --uid 10001 --gid serve --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin serve
COPY serve /usr/local/bin/serve
COPY libonnxruntime.so.\${ORT_VERSION} /opt/onnxruntime/libonnxruntime.so.\${ORT_VERSION}
COPY --chmod=0755 entrypoint.sh /usr/local/bin/entrypoint.sh
COPY --chown=serve:serve models /models
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.\${ORT_VERSION} \\
    SERVE_MODELS=/models \\
    SERVE_BIND=0.0.0.0:8080
VOLUME ["/models"]
EXPOSE 8080 8001
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
EOF
log "building $CHECK_IMAGE from $CHECK_BIN"
old_image=$(podman image inspect --format '{{.Id}}' "$CHECK_IMAGE" 2>/dev/null || true)
t0=$(now)
# --network none: the RUN step needs no network; --pull=never: no registry is ever asked.
if podman build --quiet --pull=never --network none "${RUNTIME_OPTS[@]}" -t "$CHECK_IMAGE" "$CTX" >"$WORK/build.log" 2>&1; then
  size=$(podman image inspect --format '{{.Size}}' "$CHECK_IMAGE")
  pass "image $CHECK_IMAGE built in $(since "$t0") s ($((size / 1000000)) MB)"
  # Reruns would otherwise pile up untagged copies of the previous build.
  new_image=$(podman image inspect --format '{{.Id}}' "$CHECK_IMAGE")
  [ -z "$old_image" ] || [ "$old_image" = "$new_image" ] || podman rmi "$old_image" >/dev/null 2>&1 || true
else
  cat "$WORK/build.log"
  die "image: podman build failed (log above)"
fi

# The image's configuration is the Dockerfile's.
config=$(podman image inspect --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{range .Config.Env}}{{.}};{{end}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}' "$CHECK_IMAGE")
if [[ "$config" == '10001:10001|["/usr/local/bin/entrypoint.sh"]|'* ]] \
  && [[ "$config" == *"ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.$ORT_VERSION;"* ]] \
  && [[ "$config" == *'SERVE_MODELS=/models;'* && "$config" == *'SERVE_BIND=0.0.0.0:8080;'* ]] \
  && [[ "$config" == *'"8080/tcp"'* && "$config" == *'"8001/tcp"'* && "$config" == *'"/models"'* ]]; then
  pass "image config: user 10001, entrypoint, ORT_DYLIB_PATH/models/bind env, ports 8080+8001, volume /models"
else
  fail "image config is not the Dockerfile's: $config"
fi

# ---- 3. the container ----------------------------------------------------------------------------
run_container() {  # $1: bridge or host
  local net=(-p "127.0.0.1:$CHECK_PORT:8080")
  # With the host's network the container's own 0.0.0.0:8080 would be the host's: bind PORT instead.
  [ "$1" = host ] && net=(--network host -e "SERVE_BIND=127.0.0.1:$CHECK_PORT")
  podman run -d --pull=never --name "$CONTAINER" "${RUNTIME_OPTS[@]}" \
    --read-only --tmpfs /tmp \
    -v "$ROOT/$CHECK_MODELS:/models:ro" \
    "${net[@]}" "$CHECK_IMAGE" >/dev/null
}
t_check=$(now)
case "$CHECK_NETWORK" in
  auto)
    if run_container bridge 2>"$WORK/run.log"; then NETWORK=bridge
    else
      log "the bridge network failed ($(tr '\n' ' ' <"$WORK/run.log")); trying --network host"
      podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
      run_container host 2>"$WORK/run.log" && NETWORK=host
    fi ;;
  bridge|host) run_container "$CHECK_NETWORK" 2>"$WORK/run.log" && NETWORK=$CHECK_NETWORK ;;
  *) die "CHECK_NETWORK must be auto, bridge or host" ;;
esac
[ -n "${NETWORK:-}" ] || { cat "$WORK/run.log"; die "container: podman run failed (above)"; }
logs() { podman logs "$CONTAINER" 2>&1 | tail -n 30 | sed 's/^/    | /'; }

URL="http://127.0.0.1:$CHECK_PORT"
t0=$(now); code=000
while :; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v2/health/ready" || true)
  [ "$code" = 200 ] && break
  state=$(podman inspect --format '{{.State.Status}}' "$CONTAINER" 2>/dev/null || echo gone)
  [ "$state" = running ] || break
  [ "$(since "$t0" | cut -d. -f1)" -lt "$CHECK_READY_TIMEOUT" ] || break
  sleep 1
done
if [ "$code" = 200 ]; then
  pass "GET /v2/health/ready answers 200 after $(since "$t0") s ($NETWORK network, port $CHECK_PORT)"
else
  fail "GET /v2/health/ready: $code (container ${state:-?}) after $(since "$t0") s; its log:"; logs
  exit 1
fi

answer=$(curl -s --data-binary "@$PICTURE" "$URL/v1/classify" || true)
label=$(printf '%s' "$answer" | python3 -c 'import json, sys; a = json.load(sys.stdin); p = a["results"][0]["predictions"][0]; print("%s %.3f (%s)" % (p["label"], p["probability"], a["model"]))' 2>/dev/null || true)
if [ -z "$label" ]; then
  fail "POST /v1/classify $PICTURE: no JSON with a top label: ${answer:0:300}"
elif [ -n "$CHECK_EXPECT_LABEL" ] && [ "${label%% *}" != "$CHECK_EXPECT_LABEL" ]; then
  fail "POST /v1/classify $PICTURE: top label $label, expected $CHECK_EXPECT_LABEL"
else
  pass "POST /v1/classify $PICTURE: top label $label"
fi

# PID 1 is serve itself (the entrypoint exec's it, so SIGTERM reaches it), as uid/gid 10001.
proc=$(podman exec "$CONTAINER" sh -c 'cat /proc/1/comm; grep -E "^(Uid|Gid):" /proc/1/status' 2>&1 | tr -s '\t\n ' ' ' || true)
if [[ "$proc" == "serve Uid: 10001 10001 10001 10001 Gid: 10001 10001 10001 10001"* ]]; then
  pass "PID 1 is serve, running as uid/gid 10001"
else
  fail "PID 1 is not serve as uid/gid 10001: $proc"
fi

# The root filesystem is read-only (and serve is fine with that); /tmp is the writable tmpfs.
# The write to / is tried as root: uid 10001 could not write there on a writable filesystem either.
ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$CONTAINER")
rootwrite=$(podman exec --user 0 "$CONTAINER" sh -c ': > /probe' 2>&1 || true)
if [ "$ro" = true ] && [[ "$rootwrite" == *"Read-only file system"* ]] \
  && podman exec "$CONTAINER" sh -c ': > /tmp/probe' 2>/dev/null; then
  pass "read-only root filesystem (writes to / refused, /tmp writable)"
else
  fail "read-only root filesystem: ReadonlyRootfs=$ro, or / writable, or /tmp not writable"
fi

# SIGTERM (podman stop) drains and exits 0 well before podman's SIGKILL (exit 137).
t0=$(now)
podman stop -t 30 "$CONTAINER" >/dev/null 2>&1 || true
took=$(since "$t0")
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER" 2>/dev/null || echo '?')
# Exit 0 is the drain's own exit; podman's SIGKILL after -t 30 would read as 137. The time is
# reported, not judged.
if [ "$exit_code" = 0 ]; then
  pass "podman stop (SIGTERM): exit 0 in $took s"
else
  fail "podman stop (SIGTERM): exit $exit_code in $took s (want 0: a drained exit, not podman's SIGKILL); its log:"; logs
fi
log "container checks took $(since "$t_check") s"

if [ "$FAILED" = 0 ]; then echo "PASS  all checks ($CHECK_IMAGE)"; else echo "FAIL  some checks failed"; exit 1; fi
