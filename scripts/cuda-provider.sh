#!/usr/bin/env bash
# ONNX Runtime's CUDA execution provider for onnxruntime-node, from PyPI (the package's own
# postinstall fetches it from NuGet, which .npmrc skips). See docs/inference.md "Execution providers".
#
#   scripts/cuda-provider.sh fetch      download the pinned wheels into .cache/cuda-provider/wheels,
#                                       check their SHA-256, and stage the libraries (no install)
#   scripts/cuda-provider.sh install    fetch, then copy the provider and CUDA libraries beside
#                                       onnxruntime-node's libonnxruntime.so.1 and check that every
#                                       dependency resolves except the driver's libcuda.so.1
#   scripts/cuda-provider.sh check      the installed files and their unresolved dependencies
#   scripts/cuda-provider.sh uninstall  remove what install added
#   scripts/cuda-provider.sh stage-dir  print the staged directory (scripts/image.sh build-gpu)
#
# What is installed, in node_modules/onnxruntime-node/bin/napi-v6/linux/x64/:
#   libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so   onnxruntime-gpu 1.30.0
#   cuda/   CUDA 13 runtime, cuBLAS, cuRAND, cuFFT, nvJitLink, NVRTC and cuDNN 9 (nvidia-* wheels)
# The provider's run path is set to $ORIGIN/cuda (patchelf), and every library in cuda/ finds its
# siblings through its own $ORIGIN, so no LD_LIBRARY_PATH is needed. Only the NVIDIA driver
# (libcuda.so.1, driver >= 580 for CUDA 13) comes from the host.
#
# The versions must match onnxruntime-node's exactly (the provider calls into libonnxruntime.so.1
# through an unversioned internal interface): a different onnxruntime-node version is refused.
# Downloads are cached; a second install is offline. npm ci replaces node_modules: install again.
#
# Environment: THORAX_CACHE (default .cache), PIP (default python3 -m pip).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ORT_VERSION=1.30.0
# name version sha256, as resolved for onnxruntime-gpu[cuda,cudnn]==1.30.0 (its METADATA: CUDA
# runtime and NVRTC ~=13.0, cuFFT ~=12.0, cuRAND ~=10.0, cuDNN for CUDA 13 ~=9.0; cuBLAS comes with
# cuDNN, nvJitLink with cuFFT). The provider links cuBLAS, cuBLASLt, cuRAND and the CUDA runtime and
# loads cuDNN, cuFFT and NVRTC when a graph needs them.
WHEELS="
onnxruntime-gpu $ORT_VERSION 4fbf0c5d7b5fb99266c2e8a802e3e64af68bdc383e0f3c7349b985f1087eedaa
nvidia-cuda-runtime 13.5.37 df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d
nvidia-cuda-nvrtc 13.5.37 86b4d68058807988b7d9af5b44917a0601e9c337f35ccd657bfb3c759ff8d8bc
nvidia-cublas 13.10.0.20 dcc6d63884c53d07e267ce7e6feac17b2538cebaafec5db865736c3e28e4dc84
nvidia-curand 10.4.5.25 22bb226a857e5888fe6b54ae465fc4371296bcff13a35f79e19691bcf454f529
nvidia-cufft 12.5.0.14 b8be26837a5abad2b5b74f3e92dd29f622a42934b355be0961a48712cbba23ad
nvidia-nvjitlink 13.5.37 280d7cb9649704145f074b8dbde500de04ce02d0872e066e20a83c17bcaa93eb
nvidia-cudnn-cu13 9.28.1.4 a54f205b1db1f2895d99f398754db1369816f0569dd459731f925635cf7b65ec
"
PROVIDER_LIBS="libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so"
WORK="$CACHE/cuda-provider"
WHEEL_DIR="$WORK/wheels"
STAGE="$WORK/stage"
MANIFEST_NAME=".thorax-cuda-provider"
# pip's platform tags for the wheels above (the onnxruntime-gpu wheel is CPython 3.11's; its
# provider libraries do not depend on Python).
PIP_TARGET=(--only-binary=:all: --no-deps --python-version 3.11 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)

die() { log "cuda-provider: $*"; exit 1; }

ort_dir() { echo "$ROOT/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"; }

check_platform() {
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || die "the CUDA provider wheels are for Linux x86-64 only"
}

check_ort_version() {
  local pkg="$ROOT/node_modules/onnxruntime-node/package.json" have
  [ -f "$pkg" ] || die "node_modules/onnxruntime-node is missing: run npm ci first"
  have="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$pkg")"
  [ "$have" = "$ORT_VERSION" ] ||
    die "onnxruntime-node is $have, these provider libraries are $ORT_VERSION: update WHEELS in $0 to the same version"
}

ensure_patchelf() {
  command -v patchelf >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then die "patchelf is missing (apt-get install patchelf)"; fi
  log "installing patchelf with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patchelf >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patchelf >&2; } ||
    die "could not install patchelf"
}

wheel_file() { # name version -> the downloaded file, if any
  local stem
  stem="$(echo "$1" | tr - _)-$2-"
  find "$WHEEL_DIR" -maxdepth 1 -name "$stem*.whl" | head -1
}

cmd_fetch() {
  check_platform
  mkdir -p "$WHEEL_DIR"
  local name version sha file pip
  read -r -a pip <<<"${PIP:-python3 -m pip}"
  while read -r name version sha; do
    [ -n "$name" ] || continue
    file="$(wheel_file "$name" "$version")"
    if [ -z "$file" ]; then
      log "downloading $name==$version from PyPI"
      "${pip[@]}" download --quiet --disable-pip-version-check "${PIP_TARGET[@]}" -d "$WHEEL_DIR" "$name==$version" >&2 ||
        die "pip could not download $name==$version"
      file="$(wheel_file "$name" "$version")"
      [ -n "$file" ] || die "pip saved no wheel for $name==$version in $WHEEL_DIR"
    fi
    [ "$(sha256sum "$file" | cut -c1-64)" = "$sha" ] || { rm -f "$file"; die "$(basename "$file"): SHA-256 mismatch (removed; fetch again)"; }
  done <<<"$WHEELS"
  stage
}

# Unpacks the libraries into $STAGE (once per set of wheels) and sets the provider's run path.
stage() {
  local stamp want name version sha file
  want="$(echo "$WHEELS" | sha256sum | cut -c1-64)"
  stamp="$STAGE/.wheels-sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  ensure_patchelf
  rm -rf "$STAGE" "$WORK/unpack" && mkdir -p "$STAGE/cuda" "$WORK/unpack"
  while read -r name version sha; do
    [ -n "$name" ] || continue
    file="$(wheel_file "$name" "$version")"
    if [ "$name" = onnxruntime-gpu ]; then
      for lib in $PROVIDER_LIBS; do
        unzip -q -o -j "$file" "onnxruntime/capi/$lib" -d "$STAGE"
      done
    else
      unzip -q -o "$file" 'nvidia/*' -d "$WORK/unpack"
    fi
  done <<<"$WHEELS"
  # Shared libraries only (no headers, static archives or Python files), under their sonames
  # (nvblas and cufftw are drop-in BLAS/FFTW front ends nothing here uses).
  find "$WORK/unpack" -name '*.so*' -type f ! -name 'libnvblas.so*' ! -name 'libcufftw.so*' -exec cp -p {} "$STAGE/cuda/" \;
  rm -rf "$WORK/unpack"
  # The provider finds cuda/ through its run path; the CUDA libraries find each other in cuda/.
  # shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader, not the shell
  patchelf --set-rpath '$ORIGIN/cuda' "$STAGE/libonnxruntime_providers_cuda.so"
  # shellcheck disable=SC2016
  for lib in "$STAGE"/cuda/*.so*; do patchelf --set-rpath '$ORIGIN' "$lib"; done
  chmod 0644 "$STAGE"/*.so "$STAGE"/cuda/*
  echo "$want" >"$stamp"
  log "staged in $STAGE: $(du -sh "$STAGE" | cut -f1) ($(find "$STAGE/cuda" -type f | wc -l) CUDA libraries)"
}

# Prints each dependency of the libraries under $1 that does not resolve, except libcuda.so.1.
unresolved() {
  local dir="$1" lib
  for lib in "$dir"/libonnxruntime_providers_*.so "$dir"/cuda/*.so*; do
    [ -f "$lib" ] || continue
    ldd "$lib" 2>&1 | awk -v lib="$(basename "$lib")" '/not found/ && $1 != "libcuda.so.1" { print lib ": " $1 }'
  done
}

cmd_install() {
  check_platform
  check_ort_version
  cmd_fetch
  local dir stamp
  dir="$(ort_dir)"
  stamp="$(cat "$STAGE/.wheels-sha256")"
  if [ -f "$dir/$MANIFEST_NAME" ] && [ "$(head -1 "$dir/$MANIFEST_NAME")" = "$stamp" ] &&
    cmp -s "$STAGE/libonnxruntime_providers_cuda.so" "$dir/libonnxruntime_providers_cuda.so"; then
    log "CUDA provider already installed in $dir"
  else
    rm -rf "$dir/cuda"
    cp -p "$STAGE"/libonnxruntime_providers_*.so "$dir/"
    cp -rp "$STAGE/cuda" "$dir/cuda"
    { echo "$stamp"; (cd "$dir" && ls libonnxruntime_providers_*.so && find cuda -type f | sort); } >"$dir/$MANIFEST_NAME"
    log "installed the CUDA provider in $dir ($(du -sh "$dir/cuda" | cut -f1) of CUDA libraries)"
  fi
  cmd_check
}

cmd_check() {
  local dir missing size
  dir="$(ort_dir)"
  for lib in $PROVIDER_LIBS; do
    [ -f "$dir/$lib" ] || die "$lib is not installed in $dir (scripts/cuda-provider.sh install)"
  done
  size="$(stat -c %s "$dir/libonnxruntime_providers_cuda.so")"
  [ "$size" -gt 100000000 ] || die "libonnxruntime_providers_cuda.so is only $size bytes: a broken copy"
  missing="$(unresolved "$dir")"
  [ -z "$missing" ] || die "unresolved dependencies:"$'\n'"$missing"
  if ldd "$dir/libonnxruntime_providers_cuda.so" | grep -q 'libcuda.so.1 => /'; then
    log "CUDA provider: every dependency resolves, NVIDIA driver found ($(ldd "$dir/libonnxruntime_providers_cuda.so" | awk '$1 == "libcuda.so.1" { print $3 }'))"
  else
    log "CUDA provider: every dependency resolves except libcuda.so.1 (no NVIDIA driver on this machine: the service falls back to the next provider)"
  fi
}

cmd_uninstall() {
  local dir
  dir="$(ort_dir)"
  rm -rf "$dir/cuda"
  for lib in $PROVIDER_LIBS; do rm -f "$dir/$lib"; done
  rm -f "$dir/$MANIFEST_NAME"
  log "removed the CUDA provider from $dir"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  install) cmd_install ;;
  check) cmd_check ;;
  uninstall) cmd_uninstall ;;
  stage-dir) echo "$STAGE" ;;
  *) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64 ;;
esac
