#!/usr/bin/env bash
# Thorax fault injection under load. Builds dist/, then runs test/e2e/fault-injection.e2e-spec.ts:
# a broker and a PostgreSQL server of its own, the four services on them, images in three bursts
# (60 %, 20 % before the results fault, 20 % before the broker fault), and meanwhile: SIGKILL of ingest, preprocess, inference and
# results (each restarted), SIGKILL of the broker (restarted on its data) and a PostgreSQL
# restart. Prints inputs, findings events, stored results, DLQ records, duplicates, losses and
# each service's peak RSS; fails on a loss, a duplicate stored result, a dead letter, a fault that
# met no backlog or a peak RSS above the bound. npm test runs it with 200 images.
#
#   scripts/fault-injection.sh [images]    default 5000
#
# Environment: THORAX_FAULT_PORT_BASE (default 23100: services base..base+3, gRPC base+10,
# broker base+20/21, PostgreSQL base+30), THORAX_FAULT_MAX_RSS_MIB (default 1024).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
IMAGES="${1:-5000}"
[[ "$IMAGES" =~ ^[1-9][0-9]*$ ]] || { echo "images must be a positive number, got '$IMAGES'" >&2; exit 2; }
cd "$ROOT"
bash scripts/with-node.sh node scripts/build.mjs
# librdkafka is the default Kafka client: built once (KAFKA_CLIENT=kafkajs runs without it).
if [ "${KAFKA_CLIENT:-librdkafka}" = librdkafka ]; then bash scripts/rdkafka.sh install; fi
export THORAX_FAULT_IMAGES="$IMAGES"
export NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --disable-warning=ExperimentalWarning --disable-warning=TimeoutNegativeWarning"
exec bash scripts/with-node.sh npx jest --selectProjects e2e --runInBand --testPathPatterns 'test/e2e/fault-injection'
