#!/usr/bin/env bash
# Thorax: an Orthanc PACS (Debian `orthanc` + `orthanc-dicomweb`) configured to send to Thorax,
# for the PACS end-to-end test and for trying the DICOM edges by hand (docs/pacs.md).
#
#   scripts/orthanc.sh start   write the configuration, start Orthanc, wait until its REST API answers
#   scripts/orthanc.sh stop    stop it (SIGTERM, then SIGKILL after 20 s)
#
# Environment (all optional):
#   ORTHANC_STATE_DIR    configuration, storage, pid and log (default <repo>/.cache/orthanc)
#   ORTHANC_HTTP_PORT    REST API on 127.0.0.1 (default 8042)
#   ORTHANC_DICOM_PORT   Orthanc's own DIMSE port (default 4242)
#   ORTHANC_AE_TITLE     Orthanc's AE title, the calling AE Thorax sees (default ORTHANC)
#   THORAX_DIMSE_HOST / THORAX_DIMSE_PORT / THORAX_AE_TITLE  the `thorax` modality (127.0.0.1 / 11112 / THORAX)
#   THORAX_DICOMWEB_URL  the `thorax` DICOMweb server (default http://127.0.0.1:8081/dicomweb/)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
# shellcheck source=lib.sh
. "$SCRIPT_DIR/lib.sh"

STATE="${ORTHANC_STATE_DIR:-$REPO_ROOT/.cache/orthanc}"
HTTP_PORT="${ORTHANC_HTTP_PORT:-8042}"
DICOM_PORT="${ORTHANC_DICOM_PORT:-4242}"
AET="${ORTHANC_AE_TITLE:-ORTHANC}"
PID_FILE="$STATE/orthanc.pid"
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so

write_config() {
  mkdir -p "$STATE/storage"
  cat >"$STATE/orthanc.json" <<JSON
{
  "Name": "thorax-test-pacs",
  "StorageDirectory": "$STATE/storage",
  "IndexDirectory": "$STATE/storage",
  "HttpPort": $HTTP_PORT,
  "DicomPort": $DICOM_PORT,
  "DicomAet": "$AET",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "HttpTimeout": 60,
  "DicomScuTimeout": 30,
  "Plugins": ["$PLUGIN"],
  "DicomModalities": {
    "thorax": ["${THORAX_AE_TITLE:-THORAX}", "${THORAX_DIMSE_HOST:-127.0.0.1}", ${THORAX_DIMSE_PORT:-11112}]
  },
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "Servers": {
      "thorax": ["${THORAX_DICOMWEB_URL:-http://127.0.0.1:8081/dicomweb/}"]
    }
  }
}
JSON
}

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    # dcmtk: the SCU tools (echoscu, storescu, dcmodify) the PACS end-to-end test drives alongside.
    ensure_apt_packages orthanc orthanc-dicomweb dcmtk || { log "orthanc, orthanc-dicomweb and dcmtk are needed (apt-get install them)"; exit 1; }
    if running; then log "orthanc already running (pid $(cat "$PID_FILE"))"; exit 0; fi
    write_config
    Orthanc "$STATE/orthanc.json" >"$STATE/orthanc.log" 2>&1 &
    echo $! >"$PID_FILE"
    wait_http "http://127.0.0.1:$HTTP_PORT/system" 60 || { tail -20 "$STATE/orthanc.log" >&2; exit 1; }
    log "orthanc up: REST http://127.0.0.1:$HTTP_PORT, DICOM $AET@127.0.0.1:$DICOM_PORT"
    ;;
  stop)
    if ! running; then rm -f "$PID_FILE"; exit 0; fi
    pid="$(cat "$PID_FILE")"
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$PID_FILE"
    ;;
  *)
    sed -n '2,15p' "$0" >&2
    exit 2
    ;;
esac
