#!/usr/bin/env bash
# An S3 API server for the object-store tests: moto's standalone server (PyPI `moto[server]`,
# pinned), in its own virtual environment under .cache/s3-test-venv.
#
#   scripts/s3-test-server.sh ensure   create the venv once (needs python3 with venv and PyPI)
#   scripts/s3-test-server.sh path     ensure, then print the moto_server executable
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/s3-test-venv"
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"

ensure() {
  # .complete is written last: an interrupted install is redone, never used half-made.
  if [ -f "$VENV/.complete" ] && [ "$(cat "$VENV/.complete")" = "$MOTO_VERSION" ]; then
    return 0
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  echo "$MOTO_VERSION" > "$VENV/.complete"
}

case "${1:-}" in
  ensure) ensure ;;
  path) ensure; echo "$VENV/bin/moto_server" ;;
  *) echo "usage: $0 ensure|path" >&2; exit 2 ;;
esac
