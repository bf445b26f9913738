#!/usr/bin/env bash
# npm test: installs what is missing, starts what the tests need (a Kafka broker from jars and a
# PostgreSQL server, both throwaway, on their own ports), then runs contract checks, type
# checking, lint, unit, trainer, integration and end-to-end tests. Prints one summary line.
# KAFKA_BROKERS / DATABASE_URL, when set, are used instead of starting servers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0=$(date +%s)
declare -a DONE=()
step() {
  local name="$1"; shift
  local s; s=$(date +%s)
  log "── $name"
  "$@"
  DONE+=("$name $(( $(date +%s) - s ))s")
}

STARTED_KAFKA=0 STARTED_PG=0
cleanup() {
  local rc=$?
  if [ "$STARTED_KAFKA" = 1 ]; then
    KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 KAFKA_STATE_DIR="$CACHE/kafka-test" \
      bash "$ROOT/scripts/kafka.sh" stop >/dev/null 2>&1 || true
  fi
  if [ "$STARTED_PG" = 1 ]; then bash "$ROOT/scripts/postgres.sh" stop || true; fi
  local summary
  summary="$(IFS=','; echo "${DONE[*]:-}")"
  if [ $rc -eq 0 ]; then
    echo "THORAX TESTS PASSED in $(( $(date +%s) - T0 ))s (${summary//,/, })"
  else
    echo "THORAX TESTS FAILED (exit $rc) after $(( $(date +%s) - T0 ))s; passed steps: ${summary//,/, }"
  fi
}
trap cleanup EXIT

# PGlite (the embedded results store) loads parts of itself with import(), which Jest's CommonJS
# sandbox only allows with Node's VM modules enabled.
export NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --disable-warning=ExperimentalWarning --disable-warning=TimeoutNegativeWarning"

step "install" ensure_node_deps
step "contracts" bash -c 'cd "$0" && bash scripts/proto.sh && git diff --exit-code --stat -- libs/contracts/src/generated' "$ROOT"
step "typecheck" tsc -p "$ROOT/tsconfig.json" --noEmit
step "lint" bash -c 'cd "$0" && nx show projects >/dev/null && eslint . --max-warnings 0' "$ROOT"
# Helm chart: lint --strict, render and kubeconform -strict (offline schemas) for each values profile.
step "helm" bash "$ROOT/scripts/k8s-tools.sh" check
step "build" build_dist
step "unit" jest --rootDir "$ROOT" --selectProjects unit
step "trainer" bash "$ROOT/scripts/trainer.sh" test
# A CPU training run to mean validation AUROC >= 0.95 whose export the serving runtime loads.
step "trainer-acceptance" bash "$ROOT/scripts/trainer.sh" acceptance
step "prometheus" bash "$ROOT/scripts/prometheus.sh" ensure

if [ -z "${KAFKA_BROKERS:-}" ]; then
  start_test_kafka() {
    export KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 KAFKA_STATE_DIR="$CACHE/kafka-test"
    bash "$ROOT/scripts/kafka.sh" reset >/dev/null 2>&1 || true
    bash "$ROOT/scripts/kafka.sh" start
  }
  STARTED_KAFKA=1
  step "kafka" start_test_kafka
  export KAFKA_BROKERS=127.0.0.1:19092
fi
if [ -z "${DATABASE_URL:-}" ]; then
  STARTED_PG=1
  step "postgres" bash "$ROOT/scripts/postgres.sh" start
  DATABASE_URL="$(bash "$ROOT/scripts/postgres.sh" url)"
  export DATABASE_URL
fi

# promtool of Prometheus 3 (built from its Go module once, cached): the rules tests run on 2.x and 3.x.
step "promtool3" bash "$ROOT/scripts/prometheus.sh" ensure3
step "dicom-reference" bash "$ROOT/scripts/dicom-reference.sh" setup
# grpcurl and grpc_health_probe (built from their Go modules once, cached) for the gRPC e2e suite.
step "grpc-tools" bash "$ROOT/scripts/grpc-tools.sh" ensure
# Debian chromium for the review page's browser test (playwright-core drives /usr/bin/chromium).
step "chromium" ensure_apt_packages chromium
# librdkafka (@confluentinc/kafka-javascript), the default Kafka client, built from source once into
# .cache (a few minutes the first time): the services under test run on it, and libs/kafka's
# integration tests run on both clients (KAFKA_CLIENT).
step "librdkafka" bash "$ROOT/scripts/rdkafka.sh" install
step "integration" jest --rootDir "$ROOT" --selectProjects integration --runInBand
step "e2e" jest --rootDir "$ROOT" --selectProjects e2e --runInBand
# The thorax image, built with buildah (skipped when its inputs are unchanged); every service run
# from its root filesystem as UID 10001 with a read-only root until ready, and one image through.
step "image" bash "$ROOT/scripts/image.sh" smoke
