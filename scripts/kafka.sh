#!/usr/bin/env bash
# Thorax: a real Apache Kafka broker (KRaft, combined broker+controller) for development, tests
# and the demo, run from jars fetched with Maven; no Docker engine needed. A single node by
# default; `cluster` runs a replicated N-node KRaft cluster from the same jars on this machine.
#
#   scripts/kafka.sh fetch    download the broker jars into the cache (once)
#   scripts/kafka.sh start    fetch if needed, format storage once, start, wait until ready, create topics
#   scripts/kafka.sh topics   create the topics of deploy/kafka/topics.conf (idempotent)
#   scripts/kafka.sh stop     stop the broker started by this script
#   scripts/kafka.sh status   exit 0 when running, 1 when not
#   scripts/kafka.sh reset    stop and delete the broker's data (clean broker on next start)
#
#   scripts/kafka.sh cluster start      start every node (format once), wait for all, create topics
#   scripts/kafka.sh cluster stop       stop every node
#   scripts/kafka.sh cluster status     one line per node; exit 0 when all run
#   scripts/kafka.sh cluster kill N     SIGKILL node N (a crash: no controlled shutdown)
#   scripts/kafka.sh cluster restart N  (re)start node N and wait until it answers
#   scripts/kafka.sh cluster wait-isr   wait until no partition is under-replicated
#   scripts/kafka.sh cluster topics     create the topics of topics.conf (idempotent)
#   scripts/kafka.sh cluster brokers    print the bootstrap list (host:port,...)
#   scripts/kafka.sh cluster reset      stop every node and delete the cluster's data
#
# Topics: deploy/kafka/topics.conf gives partitions, replication factor and configs per topic.
# This script caps the replication factor at its broker count (1 for the single node) and
# min.insync.replicas at the replication factor, unless KAFKA_TOPIC_REPLICATION_FACTOR /
# KAFKA_TOPIC_MIN_INSYNC_REPLICAS set them. Existing topics are left as they are; the topic
# provisioner (`node dist/apps/topics/src/main.js`, `thorax topics` in the image) also fixes drift.
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
#   KAFKA_TOPIC_REPLICATION_FACTOR, KAFKA_TOPIC_MIN_INSYNC_REPLICAS  replication for every topic
#
# Cluster mode (ignores KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_STATE_DIR, KAFKA_DATA_DIR and
# KAFKA_HEAP_OPTS; each node has its own ports and state under KAFKA_CLUSTER_DIR/node-<id>):
#   KAFKA_CLUSTER_NODES      number of nodes, 1-9 (default 3); all are brokers and controller voters
#   KAFKA_CLUSTER_PORT_BASE  node N listens on 127.0.0.1:<base+N>, its controller on <base+10+N>
#                            (default 29100: brokers 29101-29103, controllers 29111-29113)
#   KAFKA_CLUSTER_DIR        cluster state (default $THORAX_CACHE/kafka/cluster)
#   KAFKA_CLUSTER_HEAP_OPTS  heap of each node (default "-Xms128m -Xmx512m")
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
# The instance this invocation manages: the single node, or (cluster mode, see use_node) one node.
NODE_ID=1
VOTERS="1@$HOST:$CONTROLLER_PORT"
BROKER_COUNT=1

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

# Replication of the internal topics (consumer offsets, transaction state) and the broker
# defaults for this many brokers: 3 replicas and min.insync 2 from three brokers on, 1/1 on one.
internal_rf() { echo $((BROKER_COUNT < 3 ? BROKER_COUNT : 3)); }
internal_min_isr() { echo $(($(internal_rf) >= 3 ? 2 : 1)); }

write_server_config() {
  mkdir -p "$STATE_DIR" "$DATA_DIR"
  local rf min_isr
  rf="$(internal_rf)"
  min_isr="$(internal_min_isr)"
  cat >"$CONFIG_FILE" <<EOF
# Written by scripts/kafka.sh on every start; edit the script, not this file.
# KRaft node $NODE_ID of $BROKER_COUNT (combined broker + controller) for Thorax development and tests.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$VOTERS
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$DATA_DIR

# internal topics and broker defaults replicated across the nodes (1 on a single node)
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=12
# the transaction state log of the stages' exactly-once delivery (KAFKA_DELIVERY), replicated
# like the offsets; 12 partitions instead of 50 so the first transaction does not wait on 150
# replica creations in a three-node test cluster
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=12
default.replication.factor=$rf
min.insync.replicas=$min_isr
# a replica that was not in sync never becomes leader: no silent loss of acknowledged records
unclean.leader.election.enable=false

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
  kafka_tool kafka.tools.StorageTool format -t "$cid" -c "$CONFIG_FILE" --ignore-formatted >"$STATE_DIR/format.log" 2>&1 || {
    cat "$STATE_DIR/format.log" >&2
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
    -Dkafka.logs.dir="$STATE_DIR"
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
  local rf_override="${KAFKA_TOPIC_REPLICATION_FACTOR:-}" isr_override="${KAFKA_TOPIC_MIN_INSYNC_REPLICAS:-}"
  [[ -z "$rf_override" ]] || require_int KAFKA_TOPIC_REPLICATION_FACTOR "$rf_override"
  [[ -z "$isr_override" ]] || require_int KAFKA_TOPIC_MIN_INSYNC_REPLICAS "$isr_override"
  local existing
  existing="$(topic_tool --list 2>"$STATE_DIR/topics.err")" || {
    cat "$STATE_DIR/topics.err" >&2
    die "listing topics on $BOOTSTRAP failed (is the broker running? scripts/kafka.sh start)"
  }
  local name partitions replicas rest kv topic rf min_isr created=0 present=0
  local -a cfg
  while read -r name partitions replicas rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    require_int "partitions of $name in $TOPICS_CONF" "$partitions"
    require_int "replication factor of $name in $TOPICS_CONF" "$replicas"
    topic="$(resolve_topic "$name")"
    if grep -qxF -- "$topic" <<<"$existing"; then
      present=$((present + 1))
      continue
    fi
    # replication: the override, else the file's capped at the brokers this script runs
    rf="${rf_override:-$((replicas < BROKER_COUNT ? replicas : BROKER_COUNT))}"
    min_isr="$isr_override"
    cfg=()
    for kv in $rest; do
      if [[ "$kv" == min.insync.replicas=* ]]; then
        [[ -n "$min_isr" ]] || min_isr="${kv#*=}"
      else
        cfg+=(--config "$kv")
      fi
    done
    min_isr="${min_isr:-1}"
    require_int "min.insync.replicas of $name" "$min_isr"
    if [[ -z "$isr_override" ]] && ((min_isr > rf)); then min_isr=$rf; fi
    ((min_isr <= rf)) || die "$topic: min.insync.replicas=$min_isr above replication factor $rf"
    topic_tool --create --if-not-exists --topic "$topic" --partitions "$partitions" \
      --replication-factor "$rf" --config "min.insync.replicas=$min_isr" "${cfg[@]}" \
      >/dev/null 2>"$STATE_DIR/topics.err" || {
      cat "$STATE_DIR/topics.err" >&2
      die "creating topic $topic failed"
    }
    log "created $topic (partitions=$partitions replication=$rf min.insync.replicas=$min_isr)"
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
# cluster: N combined broker+controller nodes on this machine, one quorum, replicated topics

CLUSTER_NODES="${KAFKA_CLUSTER_NODES:-3}"
CLUSTER_PORT_BASE="${KAFKA_CLUSTER_PORT_BASE:-29100}"
CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-$KAFKA_DIR/cluster}"
CLUSTER_HEAP="${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx512m}"
ISR_TIMEOUT="${KAFKA_ISR_TIMEOUT:-180}"

cluster_init() {
  require_int KAFKA_CLUSTER_NODES "$CLUSTER_NODES"
  require_int KAFKA_CLUSTER_PORT_BASE "$CLUSTER_PORT_BASE"
  require_int KAFKA_ISR_TIMEOUT "$ISR_TIMEOUT"
  ((CLUSTER_NODES >= 1 && CLUSTER_NODES <= 9)) || die "KAFKA_CLUSTER_NODES must be 1-9, got $CLUSTER_NODES"
  ((CLUSTER_PORT_BASE >= 1024 && CLUSTER_PORT_BASE <= 65500)) || die "KAFKA_CLUSTER_PORT_BASE must be 1024-65500"
  case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR="$PWD/$CLUSTER_DIR" ;; esac
  mkdir -p "$CLUSTER_DIR"
  local id voters=()
  for ((id = 1; id <= CLUSTER_NODES; id++)); do voters+=("$id@$HOST:$((CLUSTER_PORT_BASE + 10 + id))"); done
  VOTERS="$(IFS=,; echo "${voters[*]}")"
  BROKER_COUNT=$CLUSTER_NODES
  HEAP_OPTS="$CLUSTER_HEAP"
  ADMIN_CONFIG="$CLUSTER_DIR/admin.properties"
  CLUSTER_ID_FILE="$CLUSTER_DIR/cluster.id"
}

cluster_bootstrap() {
  local id list=()
  for ((id = 1; id <= CLUSTER_NODES; id++)); do list+=("$HOST:$((CLUSTER_PORT_BASE + id))"); done
  (IFS=,; echo "${list[*]}")
}

use_node() { # id: point the single-instance helpers at node <id>
  local id=$1
  [[ "$id" =~ ^[0-9]+$ ]] && ((id >= 1 && id <= CLUSTER_NODES)) || die "no node '$id' (nodes are 1-$CLUSTER_NODES)"
  NODE_ID=$id
  STATE_DIR="$CLUSTER_DIR/node-$id"
  mkdir -p "$STATE_DIR"
  CONFIG_FILE="$STATE_DIR/server.properties"
  PID_FILE="$STATE_DIR/kafka.pid"
  LOG_FILE="$STATE_DIR/kafka.log"
  DATA_DIR="$STATE_DIR/data"
  PORT=$((CLUSTER_PORT_BASE + id))
  CONTROLLER_PORT=$((CLUSTER_PORT_BASE + 10 + id))
  BOOTSTRAP="$HOST:$PORT"
}

use_cluster() { # admin tools talk to every node
  STATE_DIR="$CLUSTER_DIR"
  BOOTSTRAP="$(cluster_bootstrap)"
}

start_node() { # id: launch one node (format on first use); does not wait
  use_node "$1"
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $HOST:$p of node $NODE_ID is already in use; stop it or set KAFKA_CLUSTER_PORT_BASE"
  done
  write_server_config
  format_storage
  log "starting node $NODE_ID on $BOOTSTRAP (controller $HOST:$CONTROLLER_PORT, heap: $HEAP_OPTS)"
  launch_broker
}

cmd_cluster_start() {
  local t0=$SECONDS id
  ensure_libs
  write_admin_config
  # every node first: the controllers need a majority of the quorum to elect a leader
  for ((id = 1; id <= CLUSTER_NODES; id++)); do
    use_node "$id"
    if broker_pid >/dev/null; then log "node $id already running"; else start_node "$id"; fi
  done
  for ((id = 1; id <= CLUSTER_NODES; id++)); do
    use_node "$id"
    wait_ready "$t0"
  done
  use_cluster
  log "cluster ready: $BOOTSTRAP ($CLUSTER_NODES nodes, $(kafka_version), $((SECONDS - t0))s)"
  if [[ "${KAFKA_SKIP_TOPICS:-0}" == 1 ]]; then
    log "KAFKA_SKIP_TOPICS=1: not creating topics"
  else
    cmd_topics
  fi
}

cmd_cluster_stop() {
  local id pid waited=0
  local -a pids=()
  # all at once: a node stopping alone would wait for controlled shutdown by a quorum that is leaving too
  for ((id = 1; id <= CLUSTER_NODES; id++)); do
    use_node "$id"
    if pid="$(broker_pid)"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$PID_FILE"
  done
  if ((${#pids[@]} == 0)); then
    log "cluster not running"
    return 0
  fi
  log "stopping ${#pids[@]} node(s) ..."
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((waited >= STOP_TIMEOUT * 10)); then
        log "pid $pid still running after ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.1
      waited=$((waited + 1))
    done
  done
  log "cluster stopped"
}

cmd_cluster_status() {
  local id pid up=0
  for ((id = 1; id <= CLUSTER_NODES; id++)); do
    use_node "$id"
    if pid="$(broker_pid)"; then
      up=$((up + 1))
      log "node $id: running on $BOOTSTRAP (pid $pid)"
    else
      log "node $id: not running ($BOOTSTRAP)"
    fi
  done
  ((up == CLUSTER_NODES))
}

cmd_cluster_kill() { # id
  use_node "${1:-}"
  local pid
  pid="$(broker_pid)" || die "node $NODE_ID is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$PID_FILE"
  log "killed node $NODE_ID (pid $pid, SIGKILL)"
}

cmd_cluster_restart() { # id
  local t0=$SECONDS pid
  use_node "${1:-}"
  if pid="$(broker_pid)"; then
    log "stopping node $NODE_ID (pid $pid) ..."
    stop_pid "$pid"
  fi
  ensure_libs
  start_node "$NODE_ID"
  wait_ready "$t0"
}

cmd_cluster_wait_isr() {
  local t0=$SECONDS out
  use_cluster
  log "waiting until every partition on $BOOTSTRAP has all its replicas in sync (timeout ${ISR_TIMEOUT}s) ..."
  while :; do
    if out="$(topic_tool --describe --under-replicated-partitions 2>/dev/null)" && [[ -z "$(tr -d '[:space:]' <<<"$out")" ]]; then
      log "all replicas in sync ($((SECONDS - t0))s)"
      return 0
    fi
    ((SECONDS - t0 < ISR_TIMEOUT)) || die "partitions still under-replicated after ${ISR_TIMEOUT}s:"$'\n'"${out:-(no answer)}"
    sleep 2
  done
}

cmd_cluster_reset() {
  cmd_cluster_stop
  case "$CLUSTER_DIR" in
    "" | / | "$HOME" | "$REPO_ROOT" | "$CACHE_ROOT" | "$KAFKA_DIR") die "refusing to delete '$CLUSTER_DIR'" ;;
  esac
  local id
  for ((id = 1; id <= 9; id++)); do rm -rf "$CLUSTER_DIR/node-$id"; done
  rm -f "$CLUSTER_ID_FILE" "$ADMIN_CONFIG" "$CLUSTER_DIR/topics.err"
  log "cluster reset: deleted the nodes' data in $CLUSTER_DIR (the jar cache is kept)"
}

cmd_cluster() {
  local sub="${1:-help}"
  [[ $# -gt 0 ]] && shift
  cluster_init
  case "$sub" in
    start) cmd_cluster_start ;;
    stop) cmd_cluster_stop ;;
    status) cmd_cluster_status ;;
    kill) cmd_cluster_kill "${1:-}" ;;
    restart) cmd_cluster_restart "${1:-}" ;;
    wait-isr) cmd_cluster_wait_isr ;;
    topics) use_cluster && cmd_topics ;;
    brokers) cluster_bootstrap ;;
    reset) cmd_cluster_reset ;;
    *)
      usage >&2
      die "unknown cluster command '$sub'"
      ;;
  esac
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
    cluster) cmd_cluster "$@" ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$cmd'"
      ;;
  esac
}

main "$@"
