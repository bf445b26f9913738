#!/usr/bin/env bash
# npm run bench — Thorax against its ceilings and against a plain single-process consumer, side by
# side in one run (issue 11; docs/inference.md "Benchmark"): native decode+resize and raw ONNX
# Runtime ceilings, each stage alone, the `npm start` pipeline against tools/bench/py/consumer.py
# per input, and the pipeline's latency at half its capacity. A command that prints figures, not
# a test; compare the ratios, which are measured in the same run.
#
#   npm run bench                          full run (about 25-35 minutes on 2 cores)
#   npm run bench -- --quick               smoke run: small N, PNG inputs only (a couple of minutes)
#   npm run bench -- --only pipeline,latency --inputs png512,dcm-j2k --n 500
#   npm run bench -- --only pipeline,latency --topologies pipeline --kafka-clients kafkajs,librdkafka
#
# Environment (all optional):
#   KAFKA_BROKERS        use this broker instead of a fresh one (topics are still created per run)
#   BENCH_KAFKA_PORT     port of the fresh broker (default 24092; controller port + 1)
#   BENCH_PORT_BASE      HTTP ports of the services: results, ingest, preprocess, inference from
#                        here (default 24080); results gRPC on BENCH_GRPC_PORT (default base + 10)
#   BENCH_DENSENET=0     skip DenseNet-121 (else exported once, untrained, into .data/bench-models;
#                        that installs the trainer's environment, scripts/trainer.sh setup)
# Python side: a venv in .cache/bench-venv from tools/bench/py/requirements.txt (PyPI).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_node_deps
build_dist
# librdkafka, the services' default Kafka client (and one of --kafka-clients): built once.
bash "$ROOT/scripts/rdkafka.sh" install >&2

VENV="$CACHE/bench-venv"
REQS="$ROOT/tools/bench/py/requirements.txt"
STAMP="$VENV/.thorax-reqs"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  log "bench: installing the Python side into $VENV"
  "${THORAX_PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" >&2
  echo "$want" >"$STAMP"
fi

quick=0
for arg in "$@"; do [ "$arg" = "--quick" ] && quick=1; done
DENSENET_DIR="$ROOT/.data/bench-models/densenet121"
if [ "${BENCH_DENSENET:-1}" != 0 ] && [ ! -d "$DENSENET_DIR" ]; then
  if [ "$quick" = 1 ]; then
    log "bench: --quick does not export DenseNet-121 (run the full bench once, or BENCH_DENSENET=0)"
  else
    log "bench: exporting an untrained DenseNet-121 (once) into $DENSENET_DIR"
    bash "$ROOT/scripts/trainer.sh" setup >&2
    (cd "$ROOT" && PYTHONPATH="$ROOT/apps/trainer/src" "$ROOT/apps/trainer/.venv/bin/python" \
      tools/bench/scripts/export_untrained.py densenet121 .data/bench-models >&2)
  fi
fi
if [ "${BENCH_DENSENET:-1}" = 0 ]; then export BENCH_DENSENET_DIR="$ROOT/.data/bench-models/none"; fi

if [ -z "${KAFKA_BROKERS:-}" ]; then
  # A fresh broker for every run: its own state directory, wiped first.
  export KAFKA_PORT="${BENCH_KAFKA_PORT:-24092}"
  export KAFKA_CONTROLLER_PORT="$((KAFKA_PORT + 1))" KAFKA_STATE_DIR="$CACHE/kafka-bench-$KAFKA_PORT"
  bash "$ROOT/scripts/kafka.sh" reset >&2 || true
  bash "$ROOT/scripts/kafka.sh" start >&2
  trap 'bash "$ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true' EXIT
  export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  # The broker's own CPU during each contender's run is reported beside theirs.
  BENCH_BROKER_PID="$(tr -dc '0-9' <"$KAFKA_STATE_DIR/kafka.pid" 2>/dev/null || true)"
  export BENCH_BROKER_PID
fi
cd "$ROOT"
"$VENV/bin/python" "$ROOT/tools/bench/py/bench.py" "$@"
