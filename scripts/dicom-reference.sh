#!/usr/bin/env bash
# Reference DICOM decoder (pydicom + pylibjpeg) for the decode comparison test
# (libs/imaging/src/reference.integration-spec.ts).
#
#   scripts/dicom-reference.sh setup              create .cache/dicom-reference/venv with the pins in
#                                                 tools/dicom-reference/requirements.txt (idempotent)
#   scripts/dicom-reference.sh test-files         print the folder of DICOM files shipped in pydicom's wheel
#   scripts/dicom-reference.sh decode OUT FILE…   decode the first frame of each FILE into OUT
#                                                 (OUT/results.json, OUT/<n>.f32; see reference.py)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL="$ROOT/tools/dicom-reference"
VENV="$ROOT/.cache/dicom-reference/venv"
PY="$VENV/bin/python"
STAMP="$VENV/.thorax-setup"
BOOTSTRAP_PYTHON="${THORAX_PYTHON:-python3}"

fingerprint() {
  { cat "$TOOL/requirements.txt"; "$BOOTSTRAP_PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

setup() {
  local want
  want="$(fingerprint)"
  if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then return 0; fi
  echo "[dicom-reference] creating $VENV" >&2
  rm -rf "$VENV"
  "$BOOTSTRAP_PYTHON" -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input -r "$TOOL/requirements.txt"
  echo "$want" >"$STAMP"
}

case "${1:-}" in
  setup) setup ;;
  test-files)
    setup
    "$PY" -c 'import pathlib, pydicom; print(pathlib.Path(pydicom.__file__).parent / "data" / "test_files")'
    ;;
  decode)
    shift
    setup
    exec "$PY" "$TOOL/reference.py" "$@"
    ;;
  *)
    echo "usage: $0 setup | test-files | decode OUT FILE..." >&2
    exit 2
    ;;
esac
