# Shared helpers for the repo's scripts (sourced, not run).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${THORAX_CACHE:-$ROOT/.cache}"

log() { printf '[thorax] %s\n' "$*" >&2; }

# Node.js 24 and node_modules/.bin first on PATH for the rest of the calling script.
use_node() {
  eval "$(bash "$ROOT/scripts/with-node.sh" bash -c 'echo "export PATH=\"$PATH\""')"
}

# npm ci when package-lock.json changed since the last install (stamp holds its hash).
ensure_node_deps() {
  use_node
  local stamp="$ROOT/node_modules/.thorax-lock-hash" want
  want="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)-$(node --version)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  log "installing npm packages (npm ci)"
  (cd "$ROOT" && npm ci --no-audit --no-fund >&2)
  echo "$want" >"$stamp"
}

# Compiles apps and libs to dist/ (swc; a second or two).
build_dist() {
  (cd "$ROOT" && node scripts/build.mjs >&2)
}

# Waits until an HTTP URL answers 200, or fails after $2 seconds.
wait_http() {
  local url="$1" timeout="${2:-90}" start
  start=$(date +%s)
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then return 1; fi
    sleep 0.5
  done
}

# Installs Debian packages that are missing (by package name), with `apt-get update` only when the
# first try fails. Returns 1 when they cannot be installed (not root, no apt-get, no mirror).
# Usage: ensure_apt_packages orthanc orthanc-dicomweb
ensure_apt_packages() {
  local missing=() pkg
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} with apt-get"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then return 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}
