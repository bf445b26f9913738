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

# Builds a Go command from the Go module proxy into the folder of <binary path> (replaced whole,
# so give each tool and version a folder of its own); nothing when the binary is there already.
# Static (no cgo), stripped, at low priority, outside any module so no go.mod around interferes.
# Usage: go_install <binary path> <package@version> [ldflags]
go_install() {
  local bin="$1" pkg="$2" ldflags="${3:-}" dir
  [ -x "$bin" ] && return 0
  command -v go >/dev/null 2>&1 || { log "go is missing: install Go (https://go.dev/dl) to build $pkg"; return 1; }
  dir="$(dirname "$bin")"
  log "building $pkg with $(go version | cut -d' ' -f3) (GOPROXY=$(go env GOPROXY); minutes the first time)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  (cd "$dir.tmp" && GOFLAGS=-mod=mod GOBIN="$dir.tmp" CGO_ENABLED=0 nice -n 10 \
    go install -trimpath -ldflags "-s -w $ldflags" "$pkg" >&2) || { rm -rf "$dir.tmp"; log "building $pkg failed"; return 1; }
  [ -x "$dir.tmp/$(basename "$bin")" ] || { rm -rf "$dir.tmp"; log "$pkg built no $(basename "$bin")"; return 1; }
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}
