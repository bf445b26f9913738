#!/usr/bin/env bash
# Thorax: builds @confluentinc/kafka-javascript (librdkafka) for KAFKA_CLIENT=librdkafka, outside
# node_modules (it is optional: kafkajs needs none of it). No prebuilt binary can be downloaded
# here, so librdkafka is compiled against Debian's libraries (CKJS_LINKING=dynamic) and the addon
# against the Node.js that scripts/with-node.sh runs: about 3 minutes on two quiet cores.
#
#   scripts/rdkafka.sh [install]   apt dev packages if missing, then build into the directory (once)
#   scripts/rdkafka.sh check       exit 0 when the package loads with this Node.js, 1 when not
#   scripts/rdkafka.sh dir         print the directory (what KAFKA_LIBRDKAFKA_DIR takes)
#   scripts/rdkafka.sh runtime-debs   print the Debian runtime libraries the build links against
#
# Environment (optional):
#   CKJS_VERSION   package version (default 1.10.1, librdkafka 2.15.1)
#   CKJS_DIR       where to install (default <repo>/.cache/confluent-kafka, where libs/kafka looks
#                  by default; elsewhere, set KAFKA_LIBRDKAFKA_DIR to it for the services)
#   CKJS_NO_APT=1  never run apt-get (fail listing the missing packages instead)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${CKJS_VERSION:-1.10.1}"
DIR="${CKJS_DIR:-$ROOT/.cache/confluent-kafka}"
BUILD_DEBS=(build-essential python3 libssl-dev zlib1g-dev libzstd-dev libsasl2-dev libcurl4-openssl-dev liblz4-dev)
RUNTIME_DEBS=(libssl3 zlib1g libzstd1 libsasl2-2 libcurl4 liblz4-1 libstdc++6)

loads() {
  bash "$ROOT/scripts/with-node.sh" node -e '
    const dir = process.argv[1], version = process.argv[2];
    const pkg = require(require("path").join(dir, "node_modules/@confluentinc/kafka-javascript/package.json"));
    if (pkg.version !== version) { console.error(`[rdkafka] ${dir} holds ${pkg.version}, not ${version}`); process.exit(1); }
    const m = require(require("path").join(dir, "node_modules/@confluentinc/kafka-javascript"));
    console.log(`[rdkafka] @confluentinc/kafka-javascript ${pkg.version} (librdkafka ${m.librdkafkaVersion}) loads in Node ${process.version} from ${dir}`);
  ' "$DIR" "$VERSION"
}

install() {
  if loads 2>/dev/null; then return 0; fi
  local missing=()
  for deb in "${BUILD_DEBS[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${CKJS_NO_APT:-0}" = 1 ]; then
      echo "[rdkafka] missing Debian packages: ${missing[*]}" >&2
      exit 1
    fi
    echo "[rdkafka] installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  mkdir -p "$DIR"
  # npm 11 runs an install script only when the package is allowed to; the version is exact.
  cat >"$DIR/package.json" <<JSON
{ "name": "thorax-confluent-kafka", "private": true, "allowScripts": { "@confluentinc/kafka-javascript": true },
  "dependencies": { "@confluentinc/kafka-javascript": "$VERSION" } }
JSON
  echo "[rdkafka] building @confluentinc/kafka-javascript $VERSION into $DIR (a few minutes)" >&2
  bash "$ROOT/scripts/with-node.sh" bash -c '
    set -euo pipefail
    # node-gyp would otherwise take the headers of a system Node.js under /usr/include/node.
    export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"
    [ -d "$npm_config_nodedir/include/node" ] || unset npm_config_nodedir
    # Under `npm test` npm hands the settings of the repo .npmrc (ignore-scripts=true among them) to
    # the scripts it runs; the build of this package is its install script, so it is allowed here.
    cd "$1" && CKJS_LINKING=dynamic npm_config_ignore_scripts=false npm install --no-audit --no-fund --foreground-scripts --ignore-scripts=false >&2
  ' _ "$DIR"
  loads
}

case "${1:-install}" in
  install) install ;;
  check) loads ;;
  dir) echo "$DIR" ;;
  runtime-debs) echo "${RUNTIME_DEBS[*]}" ;;
  *) echo "usage: $0 [install|check|dir|runtime-debs]" >&2; exit 2 ;;
esac
