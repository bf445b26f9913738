#!/usr/bin/env bash
# Standard gRPC clients for testing the results service as its users would, built from the Go
# module proxy and cached in $CACHE/grpc-tools keyed by version (offline once built):
#   grpc-tools.sh ensure              build grpcurl and grpc_health_probe when missing (about two
#                                     minutes the first time on a two-core machine, then instant)
#   grpc-tools.sh path grpcurl|grpc_health_probe   print where a tool is (building it if needed)
#   grpc-tools.sh grpcurl ARGS        run the cached grpcurl
#   grpc-tools.sh grpc_health_probe ARGS   run the cached grpc_health_probe
# The e2e suite test/e2e/grpc-clients.e2e-spec.ts finds them through GRPCURL_BIN and
# GRPC_HEALTH_PROBE_BIN (default: these cached builds).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GRPCURL_VERSION="${GRPCURL_VERSION:-v1.9.3}"
GRPC_HEALTH_PROBE_VERSION="${GRPC_HEALTH_PROBE_VERSION:-v0.4.63}"

TOOLS="$CACHE/grpc-tools"
GRPCURL="$TOOLS/grpcurl-$GRPCURL_VERSION/grpcurl"
GRPC_HEALTH_PROBE="$TOOLS/grpc-health-probe-$GRPC_HEALTH_PROBE_VERSION/grpc-health-probe"


ensure() {
  mkdir -p "$TOOLS"
  # One builder at a time (a test and a check may ask at once); the others wait for its result.
  exec 9>"$TOOLS/.lock"
  flock 9
  # grpcurl's Makefile stamps its version in main.version (`grpcurl -version`).
  go_install "$GRPCURL" "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" "-X main.version=$GRPCURL_VERSION"
  go_install "$GRPC_HEALTH_PROBE" "github.com/grpc-ecosystem/grpc-health-probe@$GRPC_HEALTH_PROBE_VERSION" \
    "-X main.versionTag=$GRPC_HEALTH_PROBE_VERSION"
}

case "${1:-}" in
  ensure) ensure ;;
  grpcurl) shift; ensure; exec "$GRPCURL" "$@" ;;
  grpc_health_probe) shift; ensure; exec "$GRPC_HEALTH_PROBE" "$@" ;;
  path)
    case "${2:-}" in
      grpcurl) ensure >/dev/null; echo "$GRPCURL" ;;
      grpc_health_probe) ensure >/dev/null; echo "$GRPC_HEALTH_PROBE" ;;
      *) echo "usage: $0 path grpcurl|grpc_health_probe" >&2; exit 2 ;;
    esac
    ;;
  *)
    echo "usage: $0 ensure|path TOOL|grpcurl ARGS|grpc_health_probe ARGS" >&2
    exit 2
    ;;
esac
