#!/usr/bin/env bash
# Regenerates the imaging fixture corpus (test/fixtures/imaging/{valid,hostile}, manifest.json),
# the interoperability pairs (test/fixtures/imaging/interop, interop.py; its HTJ2K file is
# encoded by OpenJPH under Node) and the real photographs for the parity test
# (test/fixtures/imaging/real, real.py: public-domain / CC0 pictures from the scikit-image wheel,
# fetched from PyPI with pip download, and their derivatives). The corpus is committed; run this
# after changing any of the scripts.
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
"$ROOT/apps/trainer/.venv/bin/python" interop.py
WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
"$ROOT/apps/trainer/.venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 scikit-image==0.26.0 -d "$WHEELS"
"$ROOT/apps/trainer/.venv/bin/python" real.py "$WHEELS"/scikit_image-*.whl
