#!/usr/bin/env bash
# DenseNet-121 on one NVIDIA GPU, in one run: Thorax's inference runtime (libs/model-runtime's
# worker pool on ONNX Runtime's CUDA provider) against raw onnxruntime-node CUDA and raw PyTorch
# (bf16 autocast, batch 256), all on the same GPU and the same untrained DenseNet-121 graph
# (tools/bench/scripts/export_untrained.py). For a GPU machine without registry access:
#
#   here:  bash scripts/cuda-provider.sh install && bash tools/gpu/pack.sh   (tools/gpu/.bundle.tar.xz)
#   there: bash tools/gpu/bench.sh                                          (from the repo root)
#
# Needs there: an NVIDIA driver (580+ for CUDA 13), python3 with torch, torchvision, onnx and
# onnxscript (the model export and the PyTorch ceiling), and the bundle (Node.js, onnxruntime-node
# and its CUDA provider). CUDA 13 and cuDNN 9 come from PyTorch's nvidia-* wheels when the bundle
# has none. Fails at once, saying what is missing, when the bundle is absent.
# Environment: BENCH_BATCH (256), BENCH_SECONDS (10), BENCH_WORKERS (2), BENCH_OUT (/tmp/thorax-gpu).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tools/gpu"
OUT="${BENCH_OUT:-/tmp/thorax-gpu}"
BATCH="${BENCH_BATCH:-256}"
SECONDS_EACH="${BENCH_SECONDS:-10}"
WORKERS="${BENCH_WORKERS:-2}"
say() { printf '[gpu-bench] %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 3; }

if ! { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2; }; then
  fail "no nvidia-smi: this is not an NVIDIA GPU machine"
fi
python3 -c 'import torch, torchvision, onnx; assert torch.cuda.is_available()' 2>/dev/null ||
  fail "python3 lacks torch/torchvision/onnx or sees no CUDA device"

# The bundle: unpacked from the carried archive, or already unpacked beside this script.
mkdir -p "$OUT"
if [ -f "$HERE/.bundle.tar.xz" ]; then
  tar -C "$OUT" -xJf "$HERE/.bundle.tar.xz"
  BUNDLE="$OUT/.bundle"
elif [ -d "$HERE/.bundle" ]; then
  BUNDLE="$HERE/.bundle"
else
  fail "Node.js and onnxruntime-node with its CUDA provider are not here. They travel as tools/gpu/.bundle.tar.xz,
  made by 'bash tools/gpu/pack.sh' on a machine with registry access after 'bash scripts/cuda-provider.sh install':
  Node.js 24 (122 MiB), libonnxruntime.so.1 (44 MiB) and libonnxruntime_providers_cuda.so (260 MiB) are
  211 MiB with xz (measured 2026-11-30), over the 64 MiB the device tool carries per call beside a 21 MiB
  working tree. Needed: a GPU machine with Node.js 24 and onnxruntime-gpu 1.30.0's provider libraries on it,
  or a transfer limit of about 240 MiB."
fi
ORT_BIN="$BUNDLE/node_modules/onnxruntime-node/bin/napi-v6/linux/x64"
[ -f "$ORT_BIN/libonnxruntime_providers_cuda.so" ] || fail "the bundle has no CUDA provider"

# CUDA 13 / cuDNN 9: the bundle's, else those of PyTorch's nvidia-* wheels.
if [ ! -d "$ORT_BIN/cuda" ]; then
  LD_LIBRARY_PATH="$(python3 - <<'PY'
import glob, os, nvidia
roots = list(nvidia.__path__)
dirs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)})
print(":".join(dirs))
PY
)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LD_LIBRARY_PATH
fi
missing="$(ldd "$ORT_BIN/libonnxruntime_providers_cuda.so" | awk '/not found/ { print $1 }')"
[ -z "$missing" ] || fail "the CUDA provider's dependencies do not resolve: $missing"

say "exporting the untrained DenseNet-121 (Thorax contract: uint8 1x256x256 in, 14 scores out)"
(cd "$ROOT" && PYTHONPATH="$ROOT/apps/trainer/src" python3 tools/bench/scripts/export_untrained.py densenet121 "$OUT/models" >&2)
MODEL_DIR="$OUT/models/densenet121"

say "raw PyTorch, bf16, batch $BATCH"
torch_line="$(cd "$ROOT" && PYTHONPATH="$ROOT/apps/trainer/src" python3 "$HERE/torch_bench.py" --batch "$BATCH" --seconds "$SECONDS_EACH")"
say "raw onnxruntime-node, CUDA provider, batch $BATCH"
raw_line="$(THORAX_DIST="$BUNDLE/dist" "$BUNDLE/node" "$HERE/ort_bench.cjs" raw "$MODEL_DIR" "$BATCH" "$SECONDS_EACH")"
say "Thorax inference runtime (worker pool, $WORKERS workers), CUDA provider, batch $BATCH"
pool_line="$(THORAX_DIST="$BUNDLE/dist" "$BUNDLE/node" "$HERE/ort_bench.cjs" pool "$MODEL_DIR" "$BATCH" "$SECONDS_EACH" "$WORKERS")"

printf '%s\n%s\n%s\n' "$torch_line" "$raw_line" "$pool_line" | tee "$OUT/results.jsonl"
python3 - "$OUT/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {r["what"]: r for r in rows}
torch_ips = by["pytorch-bf16"]["imgPerSec"]
raw_ips = by["onnxruntime-node-cuda"]["imgPerSec"]
pool_ips = by["thorax-inference-pool-cuda"]["imgPerSec"]
print(f"\nDenseNet-121, batch {by['pytorch-bf16']['batch']}, {by['pytorch-bf16']['device']}")
print(f"{'path':44} {'img/s':>9}")
print(f"{'raw PyTorch (bf16 autocast, channels-last)':44} {torch_ips:9.1f}")
print(f"{'raw onnxruntime-node, CUDA provider (fp32)':44} {raw_ips:9.1f}")
print(f"{'Thorax runtime (worker pool), CUDA provider':44} {pool_ips:9.1f}")
print(f"\nThorax runtime / raw onnxruntime-node: {pool_ips / raw_ips:.2f}")
print(f"Thorax runtime / raw PyTorch bf16:     {pool_ips / torch_ips:.2f}")
PY
