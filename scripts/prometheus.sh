#!/usr/bin/env bash
# Prometheus tools for Thorax (Debian's `prometheus` package: the server and promtool).
#   prometheus.sh ensure   install the package with apt-get when prometheus or promtool is missing
#   prometheus.sh test     promtool: check the configs and rules, run the rules' unit tests
#   prometheus.sh run      a Prometheus on 127.0.0.1:${PROMETHEUS_PORT:-9090} scraping `npm start`'s
#                          services with the Thorax rules (data in $CACHE/prometheus; foreground)
# Tests find the binaries on PATH or through PROMETHEUS_BIN / PROMTOOL_BIN.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEPLOY="$ROOT/deploy/prometheus"

have_tools() {
  command -v "${PROMETHEUS_BIN:-prometheus}" >/dev/null 2>&1 && command -v "${PROMTOOL_BIN:-promtool}" >/dev/null 2>&1
}

ensure() {
  if have_tools; then return 0; fi
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
      log "prometheus/promtool missing and not root: install Debian's prometheus package"; return 1
    fi
  fi
  log "installing Prometheus and promtool from Debian (apt-get install prometheus)"
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus >&2
  have_tools
}

case "${1:-}" in
  ensure)
    ensure
    log "$("${PROMETHEUS_BIN:-prometheus}" --version 2>&1 | head -1)"
    ;;
  test)
    ensure
    promtool="${PROMTOOL_BIN:-promtool}"
    "$promtool" check config "$DEPLOY/prometheus.yml" "$DEPLOY/prometheus.compose.yml"
    "$promtool" check rules "$DEPLOY"/rules/*.rules.yml
    (cd "$DEPLOY" && "$promtool" test rules tests/*.test.yml)
    ;;
  run)
    ensure
    mkdir -p "$CACHE/prometheus"
    exec "${PROMETHEUS_BIN:-prometheus}" --config.file="$DEPLOY/prometheus.yml" \
      --storage.tsdb.path="$CACHE/prometheus" --web.listen-address="127.0.0.1:${PROMETHEUS_PORT:-9090}"
    ;;
  *)
    echo "usage: $0 ensure|test|run" >&2
    exit 2
    ;;
esac
