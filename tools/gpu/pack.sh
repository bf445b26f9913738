#!/usr/bin/env bash
# Packs what tools/gpu/bench.sh needs on a GPU machine that has no Node.js and no registry access:
# Node.js, dist/libs/model-runtime with the packages it loads, and onnxruntime-node with the CUDA
# provider (scripts/cuda-provider.sh install first). The CUDA 13 and cuDNN 9 libraries are left
# out when the GPU machine's PyTorch brings the same major versions (nvidia-* wheels, found by
# bench.sh); --with-cuda packs ours too.
#   bash tools/gpu/pack.sh [--with-cuda]   -> tools/gpu/.bundle.tar.xz and its size
# The device tool moves at most 64 MiB of working tree per call (/work/.library/device/README.md);
# the script says whether the archive fits.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
use_node
HERE="$ROOT/tools/gpu"
BUNDLE="$HERE/.bundle"
ORT_BIN=node_modules/onnxruntime-node/bin/napi-v6/linux/x64
LIMIT_MIB=64

[ -f "$ROOT/$ORT_BIN/libonnxruntime_providers_cuda.so" ] ||
  { log "the CUDA provider is not installed: bash scripts/cuda-provider.sh install"; exit 1; }
build_dist
rm -rf "$BUNDLE" "$HERE/.bundle.tar.xz"
mkdir -p "$BUNDLE/dist/libs" "$BUNDLE/node_modules"
install -m 0755 "$(command -v node)" "$BUNDLE/node"
cp -r "$ROOT/dist/libs/model-runtime" "$ROOT/dist/libs/contracts" "$BUNDLE/dist/libs/"

# onnxruntime-node for linux/x64 only, with the provider libraries.
mkdir -p "$BUNDLE/$ORT_BIN"
cp -r "$ROOT/node_modules/onnxruntime-node/package.json" "$ROOT/node_modules/onnxruntime-node/dist" \
  "$BUNDLE/node_modules/onnxruntime-node/"
cp "$ROOT/$ORT_BIN"/*.so* "$ROOT/$ORT_BIN"/*.node "$BUNDLE/$ORT_BIN/"
[ "${1:-}" = "--with-cuda" ] && cp -r "$ROOT/$ORT_BIN/cuda" "$BUNDLE/$ORT_BIN/cuda"

# Every other package the runtime loads: add the one Node reports missing until it loads.
for _ in $(seq 1 40); do
  missing="$(cd "$BUNDLE" && ./node -e 'require("./dist/libs/model-runtime/src/index.js")' 2>&1 |
    sed -n "s/.*Cannot find module '\([^']*\)'.*/\1/p" | head -1)" || true
  [ -n "$missing" ] || break
  pkg="$(echo "$missing" | awk -F/ '{ print ($1 ~ /^@/) ? $1 "/" $2 : $1 }')"
  [ -d "$ROOT/node_modules/$pkg" ] || { log "pack: $pkg is not in node_modules"; exit 1; }
  [ -d "$BUNDLE/node_modules/$pkg" ] && { log "pack: $missing still missing after copying $pkg"; exit 1; }
  mkdir -p "$(dirname "$BUNDLE/node_modules/$pkg")"
  cp -r "$ROOT/node_modules/$pkg" "$BUNDLE/node_modules/$pkg"
done
(cd "$BUNDLE" && ./node -e 'require("./dist/libs/model-runtime/src/index.js")') || { log "pack: the runtime does not load from the bundle"; exit 1; }

log "bundle: $(du -sh "$BUNDLE" | cut -f1) unpacked; compressing (xz)"
tar -C "$HERE" -cf - .bundle | xz -6 -T2 >"$HERE/.bundle.tar.xz"
size=$(stat -c %s "$HERE/.bundle.tar.xz")
mib=$(( (size + 1048575) / 1048576 ))
# The rest of the working tree travels too (tracked and untracked, not ignored, files).
tree=$(cd "$ROOT" && git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { printf "%d", (s + 1048575) / 1048576 }')
log "tools/gpu/.bundle.tar.xz: $mib MiB; the working tree beside it: $tree MiB"
if [ $((mib + tree)) -ge "$LIMIT_MIB" ]; then
  log "TOO LARGE for one device call: the device tool carries at most $LIMIT_MIB MiB of working tree per call."
  log "Largest parts: $(cd "$BUNDLE" && find . -type f -size +10M -exec du -m {} + | sort -rn | head -4 | awk '{ printf "%s %s MiB; ", $2, $1 }')"
  exit 2
fi
log "fits: carry tools/gpu/.bundle.tar.xz and run bash tools/gpu/bench.sh there"
