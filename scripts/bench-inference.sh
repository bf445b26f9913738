#!/usr/bin/env bash
# npm run bench:inference — throughput of raw ONNX Runtime, the inference service, each stage
# and the whole pipeline, plus latency at half load, side by side in one run. Uses
# KAFKA_BROKERS when set, else a throwaway broker on port 24092.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_node_deps
build_dist
if [ -z "${KAFKA_BROKERS:-}" ]; then
  export KAFKA_PORT=24092 KAFKA_CONTROLLER_PORT=24093 KAFKA_STATE_DIR="$CACHE/kafka-bench"
  bash "$ROOT/scripts/kafka.sh" start >&2
  trap 'bash "$ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true' EXIT
  export KAFKA_BROKERS=127.0.0.1:24092
fi
node "$ROOT/dist/tools/bench/src/inference-bench.js"
