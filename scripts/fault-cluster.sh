#!/usr/bin/env bash
# Thorax: the broker-crash test with more load. Builds dist/, then runs the end-to-end test
# test/e2e/kafka-cluster.e2e-spec.ts: a three-node KRaft cluster from the Kafka jars, topics from
# deploy/kafka/topics.conf (replication 3, min.insync.replicas 2), the four services on it,
# images published at a steady rate (each batch in a Kafka transaction), SIGKILL of one broker a
# third of the way in and its restart at two thirds, and SIGKILL of each stage once in the same run
# (ingest at 1/6, preprocess at 1/2, inference at 7/12, results at 5/6, each replaced); prints the
# figures and fails unless every input has exactly one stored result and a read_committed
# consumer of thorax.findings.v1 sees exactly one event per input (0 duplicates, 0 losses).
#
#   scripts/fault-cluster.sh [images] [rate]    defaults: 2000 images at 20 images/s
#
# Environment: THORAX_CLUSTER_PORT_BASE (default 21100: brokers base+1..3, controllers
# base+11..13, services base+100..base+110), DATABASE_URL (results on PostgreSQL; else embedded).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
IMAGES="${1:-2000}"
RATE="${2:-20}"
[[ "$IMAGES" =~ ^[1-9][0-9]*$ ]] || { echo "images must be a positive number, got '$IMAGES'" >&2; exit 2; }
[[ "$RATE" =~ ^[1-9][0-9]*$ ]] || { echo "rate must be a positive number, got '$RATE'" >&2; exit 2; }
cd "$ROOT"
bash scripts/with-node.sh node scripts/build.mjs
# librdkafka is the default Kafka client: built once (KAFKA_CLIENT=kafkajs runs without it).
if [ "${KAFKA_CLIENT:-librdkafka}" = librdkafka ]; then bash scripts/rdkafka.sh install; fi
export THORAX_CLUSTER_IMAGES="$IMAGES" THORAX_CLUSTER_RATE="$RATE"
export NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --disable-warning=ExperimentalWarning --disable-warning=TimeoutNegativeWarning"
exec bash scripts/with-node.sh npx jest --selectProjects e2e --runInBand --testPathPatterns 'test/e2e/kafka-cluster'
