#!/usr/bin/env bash
# A throwaway PostgreSQL server for the integration tests (Debian's postgresql package; installed
# with apt-get when missing). Usage: postgres.sh start|stop|url. State lives in $PG_STATE_DIR
# (default $CACHE/postgres); the port is $PG_TEST_PORT (default 15432).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${PG_TEST_PORT:-15432}"
STATE="${PG_STATE_DIR:-$CACHE/postgres}"
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac
DATA="$STATE/data"
SOCK="$STATE/run"

pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$dir" ]; then
    log "installing PostgreSQL from Debian (apt-get)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    dir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  echo "$dir"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    BIN="$(pg_bin)"
    mkdir -p "$STATE"
    if [ "$(id -u)" = 0 ]; then chown postgres "$STATE"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$DATA" -U thorax --auth=trust -E UTF8 >/dev/null
    fi
    as_pg mkdir -p "$SOCK"
    if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DATA" -l "$STATE/server.log" -w -t 60 \
        -o "-p $PORT -k $SOCK -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    fi
    as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U thorax -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='thorax_test'" | grep -q 1 ||
      as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U thorax thorax_test
    log "postgres ready on 127.0.0.1:$PORT"
    ;;
  stop)
    BIN="$(pg_bin)"
    if [ -f "$DATA/PG_VERSION" ]; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true; fi
    ;;
  url)
    echo "postgres://thorax@127.0.0.1:$PORT/thorax_test"
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
