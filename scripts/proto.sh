#!/usr/bin/env bash
# Lints the protobuf schemas and regenerates the TypeScript contracts from them (offline: buf's
# own compiler plus ts-proto from node_modules).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/proto"
buf lint
rm -rf ../libs/contracts/src/generated
buf generate
