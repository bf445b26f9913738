#!/usr/bin/env bash
# Kept for the commands in older notes: builds @confluentinc/kafka-javascript into
# .cache/confluent-kafka through scripts/rdkafka.sh (which KAFKA_CLIENT=librdkafka also uses).
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/rdkafka.sh" install
