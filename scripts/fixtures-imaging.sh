#!/usr/bin/env bash
# Regenerates the imaging fixture corpus (test/fixtures/imaging/{valid,hostile}, manifest.json).
# The corpus is committed; run this after changing test/fixtures/imaging/generate.py.
# Needs: the trainer venv (bash scripts/trainer.sh setup: pydicom, pylibjpeg-openjpeg, Pillow,
# numpy) and Debian's dcmtk (apt-get install -y dcmtk) for JPEG, JPEG-LS, RLE, deflate and
# big-endian encodings.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v dcmcjpls >/dev/null 2>&1; then
  echo "[fixtures] dcmtk missing: apt-get install -y dcmtk" >&2
  exit 1
fi
bash "$ROOT/scripts/trainer.sh" setup >/dev/null
exec "$ROOT/apps/trainer/.venv/bin/python" "$ROOT/test/fixtures/imaging/generate.py" "$@"
