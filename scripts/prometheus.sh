#!/usr/bin/env bash
# Prometheus tools for Thorax (Debian's `prometheus` package: the server and promtool).
#   prometheus.sh ensure   install the package with apt-get when prometheus or promtool is missing
#   prometheus.sh ensure3  build promtool of Prometheus 3 from its Go module into $CACHE (once per
#                          version; a few minutes the first time), so rules are checked by both majors
#   prometheus.sh which3   print the path of that promtool (fails when it is not built)
#   prometheus.sh test     promtool 2 and 3: check the configs and rules, run the rules' unit tests
#   prometheus.sh run      a Prometheus on 127.0.0.1:${PROMETHEUS_PORT:-9090} scraping `npm start`'s
#                          services with the Thorax rules (data in $CACHE/prometheus; foreground)
# Tests find the binaries on PATH or through PROMETHEUS_BIN / PROMTOOL_BIN (Debian's, 2.x) and
# PROMTOOL3_BIN (3.x; default: the one ensure3 builds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEPLOY="$ROOT/deploy/prometheus"
# Prometheus 3 releases are tagged v0.3MM.P in Go module terms (v3.M.P is not a valid version of
# the module github.com/prometheus/prometheus, which has no /v3 suffix).
PROMETHEUS3_MODULE_VERSION="v0.316.0"
PROMTOOL3_DEFAULT="$CACHE/prometheus3/$PROMETHEUS3_MODULE_VERSION/promtool"

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

ensure3() {
  local bin="${PROMTOOL3_BIN:-$PROMTOOL3_DEFAULT}"
  if [ -x "$bin" ]; then return 0; fi
  if [ -n "${PROMTOOL3_BIN:-}" ]; then log "PROMTOOL3_BIN=$PROMTOOL3_BIN is not an executable"; return 1; fi
  log "building promtool $PROMETHEUS3_MODULE_VERSION (Prometheus 3) from the Go module proxy"
  # The release number (v0.316.0 is 3.16.0) stamped in, as the release builds do, for --version.
  local number="${PROMETHEUS3_MODULE_VERSION#v0.}" release
  release="3.$((10#${number:1:2})).${number#*.}"
  go_install "$bin" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS3_MODULE_VERSION" \
    "-X github.com/prometheus/common/version.Version=$release"
  "$bin" --version 2>&1 | head -1 >&2
}

case "${1:-}" in
  ensure)
    ensure
    log "$("${PROMETHEUS_BIN:-prometheus}" --version 2>&1 | head -1)"
    ;;
  ensure3)
    ensure3
    ;;
  which3)
    bin="${PROMTOOL3_BIN:-$PROMTOOL3_DEFAULT}"
    [ -x "$bin" ] || { log "promtool 3 is not built: run bash scripts/prometheus.sh ensure3"; exit 1; }
    echo "$bin"
    ;;
  test)
    ensure
    ensure3
    for promtool in "${PROMTOOL_BIN:-promtool}" "${PROMTOOL3_BIN:-$PROMTOOL3_DEFAULT}"; do
      log "$("$promtool" --version 2>&1 | head -1)"
      "$promtool" check config "$DEPLOY/prometheus.yml" "$DEPLOY/prometheus.compose.yml"
      "$promtool" check rules "$DEPLOY"/rules/*.rules.yml
      (cd "$DEPLOY" && "$promtool" test rules tests/*.test.yml)
    done
    ;;
  run)
    ensure
    mkdir -p "$CACHE/prometheus"
    exec "${PROMETHEUS_BIN:-prometheus}" --config.file="$DEPLOY/prometheus.yml" \
      --storage.tsdb.path="$CACHE/prometheus" --web.listen-address="127.0.0.1:${PROMETHEUS_PORT:-9090}"
    ;;
  *)
    echo "usage: $0 ensure|ensure3|which3|test|run" >&2
    exit 2
    ;;
esac
