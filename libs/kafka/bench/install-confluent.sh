#!/usr/bin/env bash
# Installs @confluentinc/kafka-javascript (librdkafka) into .cache/confluent-kafka for
# kafka-clients.cjs only: the services do not use it (docs/inference.md "Kafka client"). No
# prebuilt binary can be downloaded here, so librdkafka is compiled against Debian's libraries
# (CKJS_LINKING=dynamic) and the addon against the Node.js that scripts/with-node.sh runs: a few
# minutes on two cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
VERSION="${CKJS_VERSION:-1.10.1}"
DIR="${CKJS_DIR:-$ROOT/.cache/confluent-kafka}"
DEBS=(build-essential python3 libssl-dev zlib1g-dev libzstd-dev libsasl2-dev libcurl4-openssl-dev liblz4-dev)
missing=()
for deb in "${DEBS[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[bench] installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
mkdir -p "$DIR"
# npm 11 runs an install script only when the package is allowed to.
cat >"$DIR/package.json" <<JSON
{ "name": "thorax-bench-confluent-kafka", "private": true, "allowScripts": { "@confluentinc/kafka-javascript": true } }
JSON
bash "$ROOT/scripts/with-node.sh" bash -c '
  set -euo pipefail
  # node-gyp would otherwise take the headers of a system Node.js under /usr/include/node.
  export npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"
  [ -d "$npm_config_nodedir/include/node" ] || unset npm_config_nodedir
  cd "$1" && CKJS_LINKING=dynamic npm install --no-audit --no-fund --foreground-scripts "@confluentinc/kafka-javascript@$2" >&2
  node -e "require(\"@confluentinc/kafka-javascript\"); console.log(\"[bench] @confluentinc/kafka-javascript $2 loads in\", process.version)"
' _ "$DIR" "$VERSION"
