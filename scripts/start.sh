#!/usr/bin/env bash
# npm start: installs what is missing, starts Kafka unless KAFKA_BROKERS is set, starts the four
# services with the default model, prints the endpoints and stays in the foreground until Ctrl-C;
# then stops everything it started (services drain and commit first).
#
# THORAX_TOPOLOGY picks how the stages run (docs/operations.md "Co-located stages"):
#   pipeline (default)  ingest, preprocess and inference in one process (`thorax pipeline`), the images
#                       and tensors hand-offs in memory; results in its own process. On one machine it
#                       costs less CPU per image and answers sooner than four processes (docs/inference.md
#                       "Benchmark")
#   split               four processes, every hop through its Kafka topic (as separate deployments run)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_node_deps
build_dist

# librdkafka, the default Kafka client (KAFKA_CLIENT), compiles once into .cache/confluent-kafka
# (about 3 minutes); where it cannot be built, the services run on kafkajs and say so.
if [ "${KAFKA_CLIENT:-librdkafka}" = librdkafka ] && [ -z "${KAFKA_LIBRDKAFKA_DIR:-}" ] && ! bash "$ROOT/scripts/rdkafka.sh" check >/dev/null 2>&1; then
  log "building librdkafka for the default Kafka client (once; KAFKA_CLIENT=kafkajs skips it)"
  if ! bash "$ROOT/scripts/rdkafka.sh" install; then
    log "librdkafka could not be built (output above): running on KAFKA_CLIENT=kafkajs"
    export KAFKA_CLIENT=kafkajs
  fi
fi

STARTED_KAFKA=0
if [ -z "${KAFKA_BROKERS:-}" ]; then
  # Reuse a broker this script family already runs; stop only one we start here.
  if ! bash "$ROOT/scripts/kafka.sh" status >/dev/null 2>&1; then STARTED_KAFKA=1; fi
  bash "$ROOT/scripts/kafka.sh" start
  export KAFKA_BROKERS="127.0.0.1:${KAFKA_PORT:-9092}"
fi

LOG_DIR="${THORAX_LOG_DIR:-$ROOT/.data/logs}"
mkdir -p "$LOG_DIR"
export MODEL_DIR="${MODEL_DIR:-$ROOT/models/thorax-tiny-cnn}"
export RESULTS_DATA_DIR="${RESULTS_DATA_DIR:-$ROOT/.data/results}"
export RESULTS_FHIR_TOPIC="${RESULTS_FHIR_TOPIC-thorax.fhir.v1}"

TOPOLOGY="${THORAX_TOPOLOGY:-pipeline}"
case "$TOPOLOGY" in
  pipeline) PROCESSES=(results pipeline) ;;
  split) PROCESSES=(results inference preprocess ingest) ;;
  *) log "THORAX_TOPOLOGY must be pipeline or split, not '$TOPOLOGY'"; exit 2 ;;
esac

declare -A PIDS=()
stop_all() {
  trap - INT TERM EXIT
  log "stopping services"
  for name in "${!PIDS[@]}"; do kill -TERM "${PIDS[$name]}" 2>/dev/null || true; done
  for name in "${!PIDS[@]}"; do wait "${PIDS[$name]}" 2>/dev/null || true; done
  if [ "$STARTED_KAFKA" = 1 ]; then bash "$ROOT/scripts/kafka.sh" stop || true; fi
  log "stopped"
}
trap stop_all INT TERM EXIT

# HTTP ports: the services' defaults; <SERVICE>_HTTP_PORT moves one (a second stack on one machine).
declare -A PORTS=([ingest]=${INGEST_HTTP_PORT:-8081} [preprocess]=${PREPROCESS_HTTP_PORT:-8082}
  [inference]=${INFERENCE_HTTP_PORT:-8083} [results]=${RESULTS_HTTP_PORT:-8080})
NODE_FLAGS=(--enable-source-maps --disable-warning=TimeoutNegativeWarning)
for name in "${PROCESSES[@]}"; do
  if [ "$name" = pipeline ]; then
    # Each co-located stage keeps its own port (<SERVICE>_HTTP_PORT, read by the launcher).
    INGEST_HTTP_PORT="${PORTS[ingest]}" PREPROCESS_HTTP_PORT="${PORTS[preprocess]}" INFERENCE_HTTP_PORT="${PORTS[inference]}" \
      INGEST_GRPC_PORT="${INGEST_GRPC_PORT:-50052}" node "${NODE_FLAGS[@]}" "$ROOT/deploy/images/pipeline.js" >>"$LOG_DIR/pipeline.log" 2>&1 &
  else
    # GRPC_PORT is results'; ingest's IngestService has its own (INGEST_GRPC_PORT).
    HTTP_PORT="${PORTS[$name]}" INGEST_GRPC_PORT="${INGEST_GRPC_PORT:-50052}" node "${NODE_FLAGS[@]}" "$ROOT/dist/apps/$name/src/main.js" >>"$LOG_DIR/$name.log" 2>&1 &
  fi
  PIDS[$name]=$!
done
for name in results inference preprocess ingest; do
  logfile="$LOG_DIR/$name.log"
  if [ "$TOPOLOGY" = pipeline ] && [ "$name" != results ]; then logfile="$LOG_DIR/pipeline.log"; fi
  if ! wait_http "http://127.0.0.1:${PORTS[$name]}/readyz" 120; then
    log "$name did not become ready; last log lines:"
    tail -n 20 "$logfile" >&2
    exit 1
  fi
done

cat <<INFO

Thorax is running, topology $TOPOLOGY (logs: $LOG_DIR/*.log; Ctrl-C stops everything).
  Kafka          $KAFKA_BROKERS   publish to thorax.studies.v1, read thorax.findings.v1
  ingest         http://127.0.0.1:${PORTS[ingest]}   POST /v1/studies, POST /v1/predict; /healthz /readyz /metrics
  ingest gRPC    127.0.0.1:${INGEST_GRPC_PORT:-50052}   thorax.v1.IngestService (SubmitStudy, Predict)
  preprocess     http://127.0.0.1:${PORTS[preprocess]}   /healthz /readyz /metrics
  inference      http://127.0.0.1:${PORTS[inference]}   /healthz /readyz /metrics   model: $MODEL_DIR
  results        http://127.0.0.1:${PORTS[results]}   GET /v1/findings/{id}, GET /v1/findings
  results gRPC   127.0.0.1:${GRPC_PORT:-50051}   thorax.v1.ResultsService (reflection on)
  review page    http://127.0.0.1:${PORTS[results]}/review   worklist, heatmaps, agree/disagree (docs/review.md)

Try:  kcat -P -b $KAFKA_BROKERS -t thorax.studies.v1 -k my-image-1 -H content-type=image/png my.png
      kcat -C -b $KAFKA_BROKERS -t thorax.findings.v1 -o beginning -e
      curl -s http://127.0.0.1:${PORTS[results]}/v1/findings/my-image-1
INFO

# Stay in the foreground; if a service dies, say so and stop the rest.
while true; do
  for name in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      log "$name exited; last log lines:"
      tail -n 20 "$LOG_DIR/$name.log" >&2
      exit 1
    fi
  done
  sleep 2
done
