#!/usr/bin/env bash
# Thorax: a real single-node Apache Kafka broker (KRaft, combined broker+controller) for
# development, tests and the demo, run from jars fetched with Maven; no Docker engine needed.
#
#   scripts/kafka.sh fetch    download the broker jars into the cache (once)
#   scripts/kafka.sh start    fetch if needed, format storage once, start, wait until ready, create topics
#   scripts/kafka.sh topics   create the topics of deploy/kafka/topics.conf (idempotent)
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh status   exit 0 when running, 1 when not
#   scripts/kafka.sh reset    stop and delete the broker's data (clean broker on next start)
#
# Environment (all optional):
#   THORAX_CACHE           cache root (default <repo>/.cache); this script uses $THORAX_CACHE/kafka
#   KAFKA_PORT             client port, PLAINTEXT on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default 9093)
#   KAFKA_STATE_DIR        this broker's config, pid, log and data (default $THORAX_CACHE/kafka)
#   KAFKA_DATA_DIR         log.dirs (default $KAFKA_STATE_DIR/data)
#   KAFKA_HEAP_OPTS        broker heap (default "-Xms256m -Xmx768m")
#   KAFKA_JVM_OPTS         extra broker JVM options
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   KAFKA_SKIP_TOPICS=1    `start` does not create topics
#   TOPIC_STUDIES, TOPIC_IMAGES, TOPIC_TENSORS, TOPIC_FINDINGS   topic name overrides (DLQs follow)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
DEPLOY_DIR="$REPO_ROOT/deploy/kafka"
POM="$DEPLOY_DIR/pom.xml"
TOPICS_CONF="$DEPLOY_DIR/topics.conf"

CACHE_ROOT="${THORAX_CACHE:-$REPO_ROOT/.cache}"
case "$CACHE_ROOT" in /*) ;; *) CACHE_ROOT="$PWD/$CACHE_ROOT" ;; esac
KAFKA_DIR="$CACHE_ROOT/kafka"
LIBS_DIR="$KAFKA_DIR/libs"
LIBS_STAMP="$LIBS_DIR/.thorax-fetched"
# One broker instance's state (config, pid, log, cluster id, data); the jars above are shared, so
# a second broker (e.g. the test suite's, on other ports) only needs its own KAFKA_STATE_DIR.
STATE_DIR="${KAFKA_STATE_DIR:-$KAFKA_DIR}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
mkdir -p "$STATE_DIR"
CONFIG_FILE="$STATE_DIR/server.properties"
ADMIN_CONFIG="$STATE_DIR/admin.properties"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
PID_FILE="$STATE_DIR/kafka.pid"
LOG_FILE="$STATE_DIR/kafka.log"
DATA_DIR="${KAFKA_DATA_DIR:-$STATE_DIR/data}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST=127.0.0.1
BOOTSTRAP="$HOST:$PORT"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
MAX_MESSAGE_BYTES=52428800 # 50 MiB: raw DICOM/PNG records

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi

log() { printf '[kafka] %s\n' "$*"; }
die() { printf '[kafka] error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

require_int() { # name value
  [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'"
}
require_int KAFKA_PORT "$PORT"
require_int KAFKA_CONTROLLER_PORT "$CONTROLLER_PORT"
require_int KAFKA_START_TIMEOUT "$START_TIMEOUT"
require_int KAFKA_STOP_TIMEOUT "$STOP_TIMEOUT"
[[ "$PORT" != "$CONTROLLER_PORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both $PORT)"

# ---------------------------------------------------------------------------------------------
# jars

libs_fresh() {
  [[ -f "$LIBS_STAMP" ]] && [[ "$(cat "$LIBS_STAMP")" == "$(sha256sum "$POM" | cut -d' ' -f1)" ]] &&
    compgen -G "$LIBS_DIR/kafka_2.13-*.jar" >/dev/null
}

cmd_fetch() {
  if libs_fresh; then
    log "jars already in $LIBS_DIR ($(kafka_version))"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch the Kafka jars; install it and retry"
  mkdir -p "$KAFKA_DIR"
  local tmp="$KAFKA_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  log "fetching Kafka jars with Maven into $LIBS_DIR ..."
  local start=$SECONDS
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$KAFKA_DIR/fetch.log" 2>&1; then
    tail -n 30 "$KAFKA_DIR/fetch.log" >&2 || true
    rm -rf "$tmp"
    die "Maven could not fetch the jars (full output: $KAFKA_DIR/fetch.log)"
  fi
  sha256sum "$POM" | cut -d' ' -f1 >"$tmp/.thorax-fetched"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  log "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars ($(kafka_version)) in $((SECONDS - start))s"
}

ensure_libs() { libs_fresh || cmd_fetch; }

kafka_version() {
  local jar
  jar="$(compgen -G "$LIBS_DIR/kafka_2.13-*.jar" | head -n 1)"
  jar="${jar##*/kafka_2.13-}"
  printf 'Kafka %s' "${jar%.jar}"
}

# Short-lived admin JVMs: small heap, quick start, warnings only, bounded run time.
kafka_tool() { # main-class args...
  command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or put java on PATH)"
  timeout 60 "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$DEPLOY_DIR/tools-log4j.properties" \
    -cp "$LIBS_DIR/*" "$@"
}

write_admin_config() {
  mkdir -p "$KAFKA_DIR"
  cat >"$ADMIN_CONFIG" <<EOF
# written by scripts/kafka.sh: admin client settings of the topic tool
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

topic_tool() { # TopicCommand args... (without --bootstrap-server)
  [[ -f "$ADMIN_CONFIG" ]] || write_admin_config
  kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" "$@"
}

# ---------------------------------------------------------------------------------------------
# process helpers

broker_pid() { # prints the pid of the broker this script started, if it is alive
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # guard against a recycled pid: it must be our kafka.Kafka with our config
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $CONFIG_FILE" || return 1
  printf '%s' "$pid"
}

port_open() { # port
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

metadata_ok() { topic_tool --list >/dev/null 2>&1; }

broker_log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    printf '[kafka] last lines of %s:\n' "$LOG_FILE" >&2
    tail -n 40 "$LOG_FILE" | sed 's/^/    /' >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# start

write_server_config() {
  mkdir -p "$KAFKA_DIR" "$DATA_DIR"
  cat >"$CONFIG_FILE" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
# Single-node KRaft (combined broker + controller) for Thorax development and tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$DATA_DIR

# one broker: internal topics cannot be replicated
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1

num.partitions=6
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# raw DICOM/PNG/JPEG files travel as single records
message.max.bytes=$MAX_MESSAGE_BYTES
replica.fetch.max.bytes=$MAX_MESSAGE_BYTES
socket.request.max.bytes=104857600
EOF
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    local id
    id="$(sed -n 's/^cluster\.id=//p' "$DATA_DIR/meta.properties")"
    log "storage already formatted (cluster id ${id:-?}) in $DATA_DIR"
    return 0
  fi
  local cid=""
  [[ -f "$CLUSTER_ID_FILE" ]] && cid="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
  if [[ -z "$cid" ]]; then
    cid="$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1 | tr -d '[:space:]')"
    [[ -n "$cid" ]] || die "could not generate a cluster id"
    printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
  fi
  log "formatting storage in $DATA_DIR (cluster id $cid)"
  kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$CONFIG_FILE" --ignore-formatted >"$KAFKA_DIR/format.log" 2>&1 || {
    cat "$KAFKA_DIR/format.log" >&2
    die "formatting the storage failed"
  }
}

launch_broker() {
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  rm -f "$PID_FILE"
  local -a heap extra
  read -r -a heap <<<"$HEAP_OPTS"
  read -r -a extra <<<"${KAFKA_JVM_OPTS:-}"
  local -a jvm=(
    "$JAVA" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true
    -Dlog4j.configuration="file:$DEPLOY_DIR/log4j.properties"
    -Dkafka.logs.dir="$KAFKA_DIR"
    "${extra[@]}"
    -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG_FILE"
  )
  # own session, detached from this shell; the child writes its own pid, then becomes the JVM
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "${jvm[@]}" >>"$LOG_FILE" 2>&1 </dev/null &
  local _
  for _ in $(seq 1 50); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
  done
  [[ -s "$PID_FILE" ]] || die "the broker process did not start (see $LOG_FILE)"
}

wait_ready() { # start-epoch-seconds
  local t0=$1 deadline=$((SECONDS + START_TIMEOUT)) pid
  log "waiting for $BOOTSTRAP (timeout ${START_TIMEOUT}s) ..."
  while :; do
    if ! pid="$(broker_pid)"; then
      broker_log_tail
      rm -f "$PID_FILE"
      die "the broker exited during start-up (log: $LOG_FILE)"
    fi
    if port_open "$PORT" && metadata_ok; then
      log "ready: $BOOTSTRAP (pid $pid, $(kafka_version), $((SECONDS - t0))s)"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      broker_log_tail
      log "stopping the broker that did not become ready"
      stop_pid "$pid"
      die "the broker did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 1
  done
}

cmd_start() {
  local t0=$SECONDS pid
  ensure_libs
  if pid="$(broker_pid)"; then
    if port_open "$PORT" && metadata_ok; then
      log "already running and answering: $BOOTSTRAP (pid $pid)"
    else
      log "already started (pid $pid) but not answering yet"
      wait_ready "$t0"
    fi
  else
    rm -f "$PID_FILE"
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
      if port_open "$p"; then
        die "port $HOST:$p is already in use by another process (a broker of another cache dir?); stop it or set KAFKA_PORT / KAFKA_CONTROLLER_PORT"
      fi
    done
    write_server_config
    write_admin_config
    format_storage
    log "starting broker on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT, data $DATA_DIR, heap: $HEAP_OPTS)"
    launch_broker
    wait_ready "$t0"
  fi
  if [[ "${KAFKA_SKIP_TOPICS:-0}" == 1 ]]; then
    log "KAFKA_SKIP_TOPICS=1: not creating topics"
  else
    cmd_topics
  fi
}

# ---------------------------------------------------------------------------------------------
# topics

resolve_topic() { # default name -> name after TOPIC_* overrides
  local name=$1 base suffix=""
  if [[ "$name" == *.dlq ]]; then base="${name%.dlq}" suffix=.dlq; else base="$name"; fi
  case "$base" in
    thorax.studies.v1) base="${TOPIC_STUDIES:-$base}" ;;
    thorax.images.v1) base="${TOPIC_IMAGES:-$base}" ;;
    thorax.tensors.v1) base="${TOPIC_TENSORS:-$base}" ;;
    thorax.findings.v1) base="${TOPIC_FINDINGS:-$base}" ;;
  esac
  printf '%s%s' "$base" "$suffix"
}

cmd_topics() {
  ensure_libs
  [[ -f "$TOPICS_CONF" ]] || die "missing $TOPICS_CONF"
  port_open "$PORT" || die "no broker at $BOOTSTRAP; run scripts/kafka.sh start"
  local existing
  existing="$(topic_tool --list 2>"$KAFKA_DIR/topics.err")" || {
    cat "$KAFKA_DIR/topics.err" >&2
    die "listing topics on $BOOTSTRAP failed"
  }
  local name partitions kv topic created=0 present=0
  local -a cfg
  while read -r name partitions rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    require_int "partitions of $name in $TOPICS_CONF" "$partitions"
    topic="$(resolve_topic "$name")"
    if grep -qxF -- "$topic" <<<"$existing"; then
      present=$((present + 1))
      continue
    fi
    cfg=()
    for kv in $rest; do cfg+=(--config "$kv"); done
    topic_tool --create --if-not-exists --topic "$topic" --partitions "$partitions" \
      --replication-factor 1 "${cfg[@]}" >/dev/null 2>"$KAFKA_DIR/topics.err" || {
      cat "$KAFKA_DIR/topics.err" >&2
      die "creating topic $topic failed"
    }
    log "created $topic (partitions=$partitions${rest:+ $rest})"
    created=$((created + 1))
  done <"$TOPICS_CONF"
  log "topics: $created created, $present already present"
}

# ---------------------------------------------------------------------------------------------
# stop / status / reset

stop_pid() { # pid
  local pid=$1 waited=0
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT * 10)); then
      log "still running after ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
}

cmd_stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    log "not running"
    return 0
  fi
  log "stopping broker (pid $pid) ..."
  local t0=$SECONDS
  stop_pid "$pid"
  log "stopped ($((SECONDS - t0))s)"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      log "running: $BOOTSTRAP (pid $pid, data $DATA_DIR)"
    else
      log "running (pid $pid) but $BOOTSTRAP is not open yet"
    fi
    return 0
  fi
  log "not running"
  return 1
}

cmd_reset() {
  cmd_stop
  case "$DATA_DIR" in
    "" | / | "$HOME" | "$REPO_ROOT" | "$CACHE_ROOT") die "refusing to delete '$DATA_DIR'" ;;
  esac
  if [[ -d "$DATA_DIR" ]]; then
    rm -rf "$DATA_DIR"
    log "deleted $DATA_DIR"
  fi
  rm -f "$CLUSTER_ID_FILE"
  log "reset done (the jar cache is kept)"
}

# ---------------------------------------------------------------------------------------------

main() {
  local cmd="${1:-help}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    topics) cmd_topics ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
