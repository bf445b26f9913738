#!/usr/bin/env bash
# Regenerates the imaging fixture corpus (test/fixtures/imaging/{valid,hostile}, manifest.json)
# and the interoperability pairs (test/fixtures/imaging/interop, interop.py; its HTJ2K file is
# encoded by OpenJPH under Node). The corpus is committed; run this after changing either script.
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
cd "$ROOT/test/fixtures/imaging"
"$ROOT/apps/trainer/.venv/bin/python" generate.py "$@"
exec "$ROOT/apps/trainer/.venv/bin/python" interop.py
