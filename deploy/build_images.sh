#!/usr/bin/env bash
# Build notespace's images with podman from the Dockerfiles as they ship, then run them for real
# (deploy/image_checks.py). Run as root from anywhere; see --help and RUNBOOK.md section 1.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/build_images.sh [options]

Builds notespace-service (and, when asked, notespace-service-gpu and notespace-training) with
`podman build --isolation=chroot` from deploy/*.Dockerfile, then checks each image from the
inside (deploy/image_checks.py): read-only root, uid 10001, the host's PostgreSQL.

What to build:
  --gpu               also the GPU service image (onnxruntime-gpu with its CUDA wheels)
  --training          also the training image; checks: `notespace train mlm` on the quickstart
                      config inside it, `notespace export`, and the exported bundle served
  --no-service        skip the CPU service image
  --no-checks         build only
  --no-build          check (and save / push) the images already built with this tag
Base image (PYTHON_IMAGE):
  --base auto|pull|local   auto (default): pull python:3.11.14-slim-bookworm, and if that
                      cannot be pulled make a local base from Debian packages (debootstrap),
                      cached in $NOTESPACE_IMAGE_CACHE (default /var/cache/notespace)
Inputs:
  --bundle DIR        the model bundle the service checks serve (default: the quick start's
                      bundles/all-MiniLM-L6-v2, exported with `make` when missing)
  --torch-wheel FILE  the torch==2.13.0 CPU wheel for the training image, served to the build
                      from a local index on 127.0.0.1 (default: found in pip's find-links,
                      else TORCH_INDEX_URL, else the PyTorch CPU index)
  --ca-bundle FILE    CA certificates for pip during the build (a TLS-inspecting proxy);
                      default: $PIP_CERT or pip's configured cert, if any
  --pip-index-url URL a PyPI mirror for every pip install of the build (PIP_INDEX_URL)
  --tag TAG           image tag (default: the version in pyproject.toml)
Moving images to a server without internet access:
  --save FILE         write every image built to FILE (docker-archive; .gz compresses), for
                      `docker load` / `podman load` on the server
  --push REGISTRY     push every image built to REGISTRY (host[:port][/path]); plain HTTP
                      registries need NOTESPACE_REGISTRY_TLS_VERIFY=false
  --remove-images     remove the images built here once checked and saved (the base stays)
Environment: DEBIAN_MIRROR (debootstrap's mirror), NOTESPACE_IMAGE_CACHE, TORCH_INDEX_URL,
NOTESPACE_CHECK_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres).
EOF
}

cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
TAG=$VERSION
BUILD_SERVICE=1 BUILD_GPU=0 BUILD_TRAINING=0 RUN_CHECKS=1 REMOVE_IMAGES=0 NO_BUILD=0
BASE_MODE=auto SAVE_FILE='' PUSH_REGISTRY='' BUNDLE='' TORCH_WHEEL='' CA_BUNDLE='' PIP_INDEX=''
CACHE_DIR=${NOTESPACE_IMAGE_CACHE:-/var/cache/notespace}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
UPSTREAM_PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
GPU_ONNXRUNTIME=${DEPLOY_ONNXRUNTIME_GPU:-onnxruntime-gpu[cuda,cudnn]==1.31.1}

while [ $# -gt 0 ]; do
  case $1 in
    --gpu) BUILD_GPU=1 ;;
    --training) BUILD_TRAINING=1 ;;
    --no-service) BUILD_SERVICE=0 ;;
    --no-checks) RUN_CHECKS=0 ;;
    --no-build) NO_BUILD=1 ;;
    --remove-images) REMOVE_IMAGES=1 ;;
    --base) BASE_MODE=$2; shift ;;
    --bundle) BUNDLE=$2; shift ;;
    --torch-wheel) TORCH_WHEEL=$2; shift ;;
    --ca-bundle) CA_BUNDLE=$2; shift ;;
    --pip-index-url) PIP_INDEX=$2; shift ;;
    --tag) TAG=$2; shift ;;
    --save) SAVE_FILE=$2; shift ;;
    --push) PUSH_REGISTRY=${2%/}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case $BASE_MODE in auto|pull|local) ;; *) echo "--base: auto, pull or local" >&2; exit 2 ;; esac

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'build_images: %s\n' "$*" >&2; exit 1; }
elapsed() { echo $(( $(date +%s) - $1 )); }
TIMINGS=()
timed() { # NAME CMD...: run CMD (a failure stops the script, as set -e), remember how long
  local name=$1 start; shift
  start=$(date +%s)
  "$@"
  TIMINGS+=("$name: $(elapsed "$start") s")
}

[ "$(id -u)" = 0 ] || die "run as root (podman/buildah with chroot isolation)"
for tool in podman buildah; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install podman buildah debootstrap)"
done

SERVICE_IMAGE=localhost/notespace-service:$TAG
GPU_IMAGE=localhost/notespace-service-gpu:$TAG
TRAINING_IMAGE=localhost/notespace-training:$TAG
BUILT=()
CLEANUP=()
cleanup() { local c; for c in "${CLEANUP[@]}"; do eval "$c" || true; done; }
trap cleanup EXIT

# -- the base: python:3.11-slim, or the same made from Debian's packages ---------------------

BASE_SUITE=bookworm # its python3 is 3.11, as pyproject.toml requires
BASE_PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
BASE_CHANGES=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV LANG=C.UTF-8'
  --change 'CMD ["python3"]'
)

# The recipe: what the Dockerfiles expect of python:3.11-slim-bookworm. `python` on PATH with
# pip and venv, pip free to install (no EXTERNALLY-MANAGED), no package caches or docs.
make_local_base() { # ROOTFS
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$BASE_SUITE" "$1" "$DEBIAN_MIRROR" \
    || return
  rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED
  rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/usr/share/doc/* \
    "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/* "$1"/var/log/*.log
}

base_recipe_hash() {
  { declare -f make_local_base; echo "$BASE_SUITE $BASE_PACKAGES ${BASE_CHANGES[*]}"; } \
    | sha256sum | cut -c1-12
}

ensure_base() {
  if [ "$BASE_MODE" != local ]; then
    if podman image exists "$UPSTREAM_PYTHON_IMAGE" \
      || timeout 600 podman pull --quiet "$UPSTREAM_PYTHON_IMAGE" >/dev/null 2>&1; then
      PYTHON_IMAGE=$UPSTREAM_PYTHON_IMAGE
      log "base: $PYTHON_IMAGE"
      return
    fi
    [ "$BASE_MODE" = auto ] || die "cannot pull $UPSTREAM_PYTHON_IMAGE"
    echo "cannot pull $UPSTREAM_PYTHON_IMAGE: making the base from Debian packages instead"
  fi
  local hash tarball
  hash=$(base_recipe_hash)
  PYTHON_IMAGE=localhost/notespace-base:$BASE_SUITE-$hash
  tarball=$CACHE_DIR/notespace-base-$BASE_SUITE-$hash.tar.gz
  if podman image exists "$PYTHON_IMAGE"; then
    log "base: $PYTHON_IMAGE (in podman's storage)"
    return
  fi
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is not installed"
    log "base: making $PYTHON_IMAGE with debootstrap from $DEBIAN_MIRROR (cache is empty)"
    mkdir -p "$CACHE_DIR"
    local work
    work=$(mktemp -d "$CACHE_DIR/.base-XXXXXX")
    CLEANUP+=("rm -rf '$work'")
    make_local_base "$work/rootfs" > "$work/debootstrap.log" 2>&1 \
      || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    tar --numeric-owner -C "$work/rootfs" -czf "$work/base.tar.gz" .
    mv "$work/base.tar.gz" "$tarball" # atomic: a half-written cache never counts
    rm -rf "$work"
    # Bases made by an older recipe are superseded (images built on them keep their layers).
    find "$CACHE_DIR" -maxdepth 1 -name "notespace-base-*.tar.gz" ! -name "${tarball##*/}" -delete
    podman images --format '{{.Repository}}:{{.Tag}}' localhost/notespace-base \
      | grep -vxF "$PYTHON_IMAGE" | xargs -r -n 1 podman untag >/dev/null 2>&1 || true
  else
    log "base: importing $PYTHON_IMAGE from $tarball"
  fi
  podman import --quiet "${BASE_CHANGES[@]}" "$tarball" "$PYTHON_IMAGE" >/dev/null
}

# -- pip during the build: CA certificates, and torch's CPU wheel ----------------------------

BUILD_MOUNTS=()
ca_bundle() {
  [ -n "$CA_BUNDLE" ] && { echo "$CA_BUNDLE"; return; }
  [ -n "${PIP_CERT:-}" ] && { echo "$PIP_CERT"; return; }
  local pip
  for pip in "$ROOT/.venv/bin/pip" pip3; do
    if command -v "$pip" >/dev/null 2>&1; then
      "$pip" config get global.cert 2>/dev/null && return
    fi
  done
  return 0
}
CA_BUNDLE=$(ca_bundle)
if [ -n "$CA_BUNDLE" ]; then
  [ -f "$CA_BUNDLE" ] || die "CA bundle $CA_BUNDLE: no such file"
  # Over the base's own system bundle, for the RUN steps only: never written into a layer.
  BUILD_MOUNTS+=(-v "$(readlink -f "$CA_BUNDLE"):/etc/ssl/certs/ca-certificates.crt:ro")
fi

find_torch_wheel() {
  [ -n "$TORCH_WHEEL" ] && { echo "$TORCH_WHEEL"; return; }
  local dirs dir wheel
  dirs="${PIP_FIND_LINKS:-} $("$ROOT/.venv/bin/pip" config get global.find-links 2>/dev/null || true)"
  for dir in $dirs; do
    dir=${dir#file://}
    for wheel in "$dir"/torch-2.13.0+cpu-cp311-cp311-*linux*_x86_64.whl; do
      [ -f "$wheel" ] && { echo "$wheel"; return; }
    done
  done
  return 0
}

serve_torch_wheel() { # WHEEL: a one-package index on loopback (the build shares the host network)
  case $(basename "$1") in
    torch-2.13.0+cpu-*.whl) ;;
    *) die "$1 is not the torch 2.13.0 CPU wheel (never a CUDA build in this image)" ;;
  esac
  local index port pid
  index=$(mktemp -d)
  CLEANUP+=("rm -rf '$index'")
  mkdir "$index/torch"
  ln -s "$(readlink -f "$1")" "$index/torch/"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  python3 -m http.server --bind 127.0.0.1 --directory "$index" "$port" >/dev/null 2>&1 &
  pid=$!
  CLEANUP+=("kill $pid 2>/dev/null") # exactly the server started here
  for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/torch/')" \
      2>/dev/null && break
    sleep 0.1
  done
  TORCH_INDEX_URL=http://127.0.0.1:$port/
}

# -- build, check, move ---------------------------------------------------------------------

DANGLING_BEFORE=$(podman images --quiet --no-trunc --filter dangling=true | sort)
remove_new_dangling() { # intermediate stages and images whose tag moved: ours, nobody else's
  local now
  now=$(podman images --quiet --no-trunc --filter dangling=true | sort)
  comm -13 <(echo "$DANGLING_BEFORE") <(echo "$now") | xargs -r podman rmi --force >/dev/null 2>&1 || true
}
CLEANUP+=(remove_new_dangling)

build() { # DOCKERFILE IMAGE [BUILD-ARG...]
  local dockerfile=$1 image=$2 arg args=()
  shift 2
  if [ "$NO_BUILD" = 1 ]; then
    podman image exists "$image" || die "--no-build: $image is not built"
    BUILT+=("$image")
    return
  fi
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  [ -z "$PIP_INDEX" ] || args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX")
  log "building $image from $dockerfile"
  # docker format: OCI images drop HEALTHCHECK. No layer cache: nothing left half-used.
  podman build --isolation=chroot --format=docker --layers=false --pull=never --force-rm \
    -f "$dockerfile" -t "$image" --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" "${args[@]}" \
    "${BUILD_MOUNTS[@]}" "$ROOT"
  BUILT+=("$image")
  remove_new_dangling
}

DF_BEFORE=$(df -h / | tail -n 1)
START=$(date +%s)
if [ "$NO_BUILD" = 1 ]; then PYTHON_IMAGE="(not built here)"; else timed base ensure_base; fi

if [ "$BUILD_SERVICE" = 1 ]; then
  timed "build service" build deploy/service.Dockerfile "$SERVICE_IMAGE"
fi
if [ "$BUILD_GPU" = 1 ]; then
  timed "build service-gpu" build deploy/service.Dockerfile "$GPU_IMAGE" "ONNXRUNTIME=$GPU_ONNXRUNTIME"
fi
if [ "$BUILD_TRAINING" = 1 ]; then
  if [ -z "${TORCH_INDEX_URL:-}" ] && [ "$NO_BUILD" = 0 ]; then
    wheel=$(find_torch_wheel)
    if [ -n "$wheel" ]; then
      echo "torch: $(basename "$wheel"), served to the build from a local index"
      serve_torch_wheel "$wheel"
    fi
  fi
  torch_args=()
  [ -n "${TORCH_INDEX_URL:-}" ] && torch_args+=("TORCH_INDEX_URL=$TORCH_INDEX_URL")
  timed "build training" build deploy/training.Dockerfile "$TRAINING_IMAGE" "${torch_args[@]}"
fi

for image in "${BUILT[@]}"; do
  printf '%s: %s MB\n' "$image" $(( $(podman image inspect --format '{{.Size}}' "$image") / 1000000 ))
done

CHECKS_FAILED=0
if [ "$RUN_CHECKS" = 1 ] && [ ${#BUILT[@]} -gt 0 ]; then
  if [ -z "$BUNDLE" ] && { [ "$BUILD_SERVICE" = 1 ] || [ "$BUILD_GPU" = 1 ]; }; then
    BUNDLE=$ROOT/bundles/all-MiniLM-L6-v2
    [ -f "$BUNDLE/manifest.json" ] \
      || timed "export bundle (and the venv when missing)" make -C "$ROOT" --no-print-directory "bundles/all-MiniLM-L6-v2/manifest.json"
  fi
  check() { # NAME ARGS...: a failure is reported and the other images are still checked
    local name=$1 start; shift
    log "checking $name"
    start=$(date +%s)
    if python3 "$ROOT/deploy/image_checks.py" "$@"; then
      TIMINGS+=("checks $name: $(elapsed "$start") s")
    else
      CHECKS_FAILED=1
      TIMINGS+=("checks $name: $(elapsed "$start") s, FAILED")
    fi
  }
  [ "$BUILD_SERVICE" = 1 ] && check service service --image "$SERVICE_IMAGE" --bundle "$BUNDLE"
  if [ "$BUILD_GPU" = 1 ]; then
    echo "(no GPU here: the GPU image is checked on CPU; CUDA itself is not exercised)"
    check service-gpu service --gpu --image "$GPU_IMAGE" --bundle "$BUNDLE"
  fi
  if [ "$BUILD_TRAINING" = 1 ]; then
    TRAIN_OUT=$(mktemp -d)
    CLEANUP+=("rm -rf '$TRAIN_OUT'")
    serve_args=()
    [ "$BUILD_SERVICE" = 1 ] && serve_args=(--service-image "$SERVICE_IMAGE")
    check training training --image "$TRAINING_IMAGE" --out "$TRAIN_OUT" "${serve_args[@]}"
  fi
fi

save_images() { # FILE: one docker-archive, under the names docker-compose.yml expects
  local file=$1 image names=()
  for image in "${BUILT[@]}"; do
    # podman's localhost/NAME would load as localhost/NAME; Docker's short NAME is this one.
    names+=("docker.io/library/${image#localhost/}")
    podman tag "$image" "${names[-1]}"
  done
  local rc=0
  case $file in
    *.gz) podman save --format docker-archive --multi-image-archive "${names[@]}" \
            | gzip -1 > "$file.part" && mv "$file.part" "$file" || rc=1 ;;
    *) podman save --format docker-archive --multi-image-archive -o "$file" "${names[@]}" || rc=1 ;;
  esac
  for image in "${names[@]}"; do podman untag "$image" "$image" || true; done
  return $rc
}
if [ "$CHECKS_FAILED" = 0 ] && [ -n "$SAVE_FILE" ]; then
  log "saving ${BUILT[*]} to $SAVE_FILE"
  timed save save_images "$SAVE_FILE"
  ls -l "$SAVE_FILE"
fi
if [ "$CHECKS_FAILED" = 0 ] && [ -n "$PUSH_REGISTRY" ]; then
  for image in "${BUILT[@]}"; do
    target=$PUSH_REGISTRY/${image#localhost/}
    log "pushing $target"
    podman tag "$image" "$target"
    timed "push ${image#localhost/}" podman push --quiet --format=v2s2 \
      --tls-verify="${NOTESPACE_REGISTRY_TLS_VERIFY:-true}" "$target"
    podman untag "$image" "$target"
  done
fi
if [ "$REMOVE_IMAGES" = 1 ] && [ ${#BUILT[@]} -gt 0 ]; then
  podman rmi --force "${BUILT[@]}" >/dev/null
  echo "removed ${BUILT[*]} (base $PYTHON_IMAGE kept)"
fi

log "summary (${TAG})"
printf '  %s\n' "${TIMINGS[@]}" "total: $(elapsed "$START") s"
printf '  disk before: %s\n  disk after:  %s\n' "$DF_BEFORE" "$(df -h / | tail -n 1)"
[ "$RUN_CHECKS" = 1 ] || echo "  images NOT checked (--no-checks)"
[ "$CHECKS_FAILED" = 0 ] || die "image checks failed (above)"
