#!/usr/bin/env bash
# Thorax trainer (apps/trainer): environment, checks and the tiny reference model.
#
#   scripts/trainer.sh setup        create apps/trainer/.venv and install the package (idempotent)
#   scripts/trainer.sh test         ruff check, ruff format --check, mypy, pytest (fast suite, CI)
#   scripts/trainer.sh acceptance   the slow tests: a CPU training run to AUROC >= 0.95 whose export
#                                   the inference service's model runtime (Node) loads and serves
#   scripts/trainer.sh bench        training images/s vs the raw model step on a synthetic set
#   scripts/trainer.sh gpu-check    one script for a GPU machine without registry access: synthetic
#                                   set, bench eager and compiled, a short DenseNet-121 run (bf16)
#   scripts/trainer.sh model        synth + train + export + quantize + verify into
#                                   models/thorax-tiny-cnn/<version>/
#   scripts/trainer.sh cli …        run `python -m thorax_trainer …` inside the venv
#
# Installs use uv (bootstrapped from PyPI into the venv) with the pins in
# apps/trainer/constraints.txt. PyPI's Linux torch wheel is the CUDA build: it needs the nvidia-*
# wheels even to import on a CPU, so they are installed too; uv fetches them in parallel and
# hard-links them from its cache, which makes a cold setup take seconds rather than minutes.
# THORAX_TRAINER_INSTALLER=pip falls back to plain pip (slower, same pins).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP="$ROOT/apps/trainer"
VENV="$APP/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.thorax-setup"
UV_VERSION="0.13.9"
BOOTSTRAP_PYTHON="${THORAX_PYTHON:-python3}"
INSTALLER="${THORAX_TRAINER_INSTALLER:-uv}"

log() { printf '[trainer] %s\n' "$*" >&2; }

setup_fingerprint() {
  {
    cat "$APP/pyproject.toml" "$APP/constraints.txt"
    echo "uv=$UV_VERSION installer=$INSTALLER"
    "$BOOTSTRAP_PYTHON" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

cmd_setup() {
  local fingerprint started
  "$BOOTSTRAP_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    log "Python 3.11 or newer is required (set THORAX_PYTHON)"
    exit 1
  }
  fingerprint="$(setup_fingerprint)"
  if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$fingerprint" ]]; then
    log "setup: up to date ($VENV)"
    return 0
  fi
  started=$SECONDS
  rm -f "$STAMP"
  if [[ ! -x "$PY" ]]; then
    log "setup: creating $VENV"
    "$BOOTSTRAP_PYTHON" -m venv "$VENV"
  fi
  if [[ "$INSTALLER" == "uv" ]]; then
    "$PY" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    "$VENV/bin/uv" pip install --quiet --python "$PY" \
      --constraint "$APP/constraints.txt" --editable "$APP[dev]"
  else
    "$PY" -m pip install --quiet --disable-pip-version-check \
      --constraint "$APP/constraints.txt" --editable "$APP[dev]"
  fi
  "$PY" -c 'import torch, onnx, onnxruntime; torch.ones(1).sum()' >/dev/null
  echo "$fingerprint" >"$STAMP"
  log "setup: done in $((SECONDS - started)) s"
}

cmd_test() {
  cmd_setup
  cd "$APP"
  log "ruff check"
  "$VENV/bin/ruff" check .
  log "ruff format --check"
  "$VENV/bin/ruff" format --check .
  log "mypy"
  "$VENV/bin/mypy"
  log "pytest"
  "$VENV/bin/pytest" "$@"
}

# The slow tests. The serving check runs the exported model through libs/model-runtime (built
# into dist/ by scripts/build.mjs) under Node, so Node packages and a build are prepared first.
cmd_acceptance() {
  cmd_setup
  # shellcheck source=scripts/lib.sh
  source "$ROOT/scripts/lib.sh"
  ensure_node_deps
  build_dist
  cd "$APP"
  log "acceptance: pytest -m slow"
  THORAX_REQUIRE_SERVE_CHECK=1 "$VENV/bin/pytest" -m slow -s "$@"
}

# Training throughput on this machine's device: THORAX_BENCH_IMAGES synthetic images (2000),
# THORAX_BENCH_ARGS passed to `bench` (default: DenseNet-121 at 224, batch 16, a few steps).
cmd_bench() {
  cmd_setup
  local work="${THORAX_TRAINER_WORK:-$ROOT/.data/trainer}"
  local images="${THORAX_BENCH_IMAGES:-2000}"
  local data="$work/bench-$images"
  if [[ ! -f "$data/Data_Entry_2017.csv" ]]; then
    "$PY" -m thorax_trainer synth --out "$data" --images "$images" --size 256 --layout nih \
      --workers "$(nproc)" --clean
  fi
  # shellcheck disable=SC2086
  "$PY" -m thorax_trainer bench --data "$data" ${THORAX_BENCH_ARGS:---steps 4 --rounds 2 --warmup-steps 1} "$@"
}

# For a machine with a GPU whose Python already has torch, torchvision, onnx and onnxruntime and
# no registry access: no venv, the package runs from source. Figures go to $OUT (or the work dir).
# THORAX_GPU_PYTHON (python3), THORAX_BENCH_IMAGES (20000), THORAX_GPU_BACKBONE (densenet121),
# THORAX_GPU_BATCH (256), THORAX_GPU_COMPILE (1).
cmd_gpu_check() {
  local py="${THORAX_GPU_PYTHON:-python3}"
  local work="${THORAX_TRAINER_WORK:-$ROOT/.data/trainer}"
  local images="${THORAX_BENCH_IMAGES:-20000}"
  local backbone="${THORAX_GPU_BACKBONE:-densenet121}"
  local batch="${THORAX_GPU_BATCH:-256}"
  local data="$work/bench-$images"
  local out="${OUT:-$work/gpu-check}"
  local started=$SECONDS
  export PYTHONPATH="$APP/src${PYTHONPATH:+:$PYTHONPATH}"
  mkdir -p "$out"
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } >"$out/gpu.txt" 2>&1
  "$py" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())' \
    | tee "$out/versions.txt"
  if [[ ! -f "$data/Data_Entry_2017.csv" ]]; then
    "$py" -m thorax_trainer synth --out "$data" --images "$images" --size 256 --layout nih \
      --workers "$(nproc)" --clean
  fi
  "$py" -m thorax_trainer prepare --data "$data"
  log "gpu-check: data ready after $((SECONDS - started)) s"
  "$py" -m thorax_trainer bench --data "$data" --backbone "$backbone" --batch-size "$batch" \
    --steps 20 --rounds 2 --warmup-steps 3 --loader-threads 6 | tee "$out/bench-eager.json"
  if [[ "${THORAX_GPU_COMPILE:-1}" == "1" ]]; then
    "$py" -m thorax_trainer bench --data "$data" --backbone "$backbone" --batch-size "$batch" \
      --steps 30 --rounds 2 --warmup-steps 3 --loader-threads 6 --compile \
      | tee "$out/bench-compiled.json"
  fi
  log "gpu-check: benches done after $((SECONDS - started)) s"
  "$py" -m thorax_trainer train --data "$data" --run-dir "$out/run" --backbone "$backbone" \
    --batch-size "$batch" --epochs 2 --max-steps-per-epoch 40 --lr 1e-3 --no-deterministic \
    --loader-threads 6 --log-every 10 2>&1 | tail -n 30 | tee "$out/train.log"
  cp "$out/run/report.md" "$out/report.md" 2>/dev/null || true
  rm -f "$out/run/"*.pt
  log "gpu-check: done in $((SECONDS - started)) s; figures in $out"
}

cmd_model() {
  cmd_setup
  local version="${THORAX_MODEL_VERSION:-$(date -u +%Y.%m.%d)-1}"
  local name="thorax-tiny-cnn"
  local work="${THORAX_TRAINER_WORK:-$ROOT/.data/trainer}"
  local data="$work/synthetic"
  local run="$work/runs/$name-$version"
  local out="$ROOT/models/$name/$version"
  local images="${THORAX_SYNTH_IMAGES:-2000}"
  local seed="${THORAX_SEED:-7}"
  local epochs="${THORAX_EPOCHS:-12}"
  local started=$SECONDS
  log "model: $name $version ($images synthetic images, $epochs epochs, seed $seed)"
  "$PY" -m thorax_trainer synth --out "$data" --images "$images" --seed "$seed" --layout nih \
    --workers "$(nproc)" --clean
  rm -rf "$run"
  "$PY" -m thorax_trainer train --data "$data" --run-dir "$run" --backbone tiny-cnn \
    --epochs "$epochs" --batch-size 32 --lr 3e-3 --early-stopping 4 --seed "$seed" --device cpu
  "$PY" -m thorax_trainer export --checkpoint "$run/best.pt" --out "$out/model.onnx" \
    --name "$name" --version "$version"
  "$PY" -m thorax_trainer verify --model "$out/model.onnx" --checkpoint "$run/best.pt" \
    --data "$data"
  "$PY" -m thorax_trainer quantize --model "$out/model.onnx" --checkpoint "$run/best.pt"
  "$PY" -m thorax_trainer verify --model "$out/model.int8.onnx"
  cp "$run/report.md" "$out/report.md"
  log "model: $out/model.onnx ($(du -h "$out/model.onnx" | cut -f1)) in $((SECONDS - started)) s"
}

cmd_cli() {
  cmd_setup
  "$PY" -m thorax_trainer "$@"
}

main() {
  local command="${1:-}"
  shift || true
  case "$command" in
    setup) cmd_setup ;;
    test) cmd_test "$@" ;;
    acceptance) cmd_acceptance "$@" ;;
    bench) cmd_bench "$@" ;;
    gpu-check) cmd_gpu_check ;;
    model) cmd_model ;;
    cli) cmd_cli "$@" ;;
    *)
      echo "usage: $0 {setup|test|acceptance|bench|gpu-check|model|cli ARGS…}" >&2
      exit 2
      ;;
  esac
}

main "$@"
