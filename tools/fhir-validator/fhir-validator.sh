#!/usr/bin/env bash
# Thorax: validates FHIR R4 JSON resources offline against the official R4 structure definitions,
# with the HAPI FHIR validator (jars from Maven Central, see pom.xml) and the small Java main in
# src/. No terminology server and no network at validation time: the JVM runs with its HTTP(S)
# proxy pointed at a closed local port, so a lookup that tried to leave the machine would fail.
#
#   tools/fhir-validator/fhir-validator.sh fetch            download the jars into the cache (once per pom.xml)
#   tools/fhir-validator/fhir-validator.sh build            fetch if needed, compile the main class (once per source)
#   tools/fhir-validator/fhir-validator.sh validate FILE... build if needed, validate; "-" reads one resource from stdin
#
# validate prints one JSON line per input ({"file","valid","issues":[{"severity","location","message"}]})
# and exits 0 when no input has an error, 1 when one has, 2 on usage or I/O errors.
#
# Environment (optional): THORAX_CACHE (default <repo>/.cache; this tool uses $THORAX_CACHE/fhir-validator),
# JAVA_HOME, FHIR_VALIDATOR_HEAP (default -Xmx1g).
set -euo pipefail

TOOL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$TOOL_DIR/../.." && pwd -P)"
POM="$TOOL_DIR/pom.xml"
SRC="$TOOL_DIR/src/ThoraxFhirValidator.java"
CACHE_ROOT="${THORAX_CACHE:-$REPO_ROOT/.cache}"
case "$CACHE_ROOT" in /*) ;; *) CACHE_ROOT="$PWD/$CACHE_ROOT" ;; esac
WORK="$CACHE_ROOT/fhir-validator"
LIBS="$WORK/libs"
CLASSES="$WORK/classes"
HEAP="${FHIR_VALIDATOR_HEAP:--Xmx1g}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java" JAVAC="$JAVA_HOME/bin/javac"; else JAVA=java JAVAC=javac; fi

log() { printf '[fhir-validator] %s\n' "$*" >&2; }
die() { printf '[fhir-validator] error: %s\n' "$*" >&2; exit 2; }
hash_of() { sha256sum "$1" | cut -d' ' -f1; }

cmd_fetch() {
  if [[ -f "$LIBS/.thorax-fetched" && "$(cat "$LIBS/.thorax-fetched")" == "$(hash_of "$POM")" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch the validator jars"
  mkdir -p "$WORK"
  local tmp="$WORK/libs.tmp.$$" start=$SECONDS
  rm -rf "$tmp"
  log "fetching the HAPI FHIR validator jars with Maven into $LIBS ..."
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$WORK/fetch.log" 2>&1; then
    tail -n 30 "$WORK/fetch.log" >&2 || true
    rm -rf "$tmp"
    die "Maven could not fetch the jars (full output: $WORK/fetch.log)"
  fi
  hash_of "$POM" >"$tmp/.thorax-fetched"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - start))s"
}

cmd_build() {
  cmd_fetch
  local want
  want="$(hash_of "$SRC")-$(hash_of "$POM")"
  if [[ -f "$CLASSES/.thorax-built" && "$(cat "$CLASSES/.thorax-built")" == "$want" ]]; then return 0; fi
  command -v "$JAVAC" >/dev/null || die "javac (a JDK, 17 or newer) is needed to compile the validator"
  local tmp="$WORK/classes.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  "$JAVAC" -nowarn -encoding UTF-8 -d "$tmp" -cp "$LIBS/*" "$SRC" 2>"$WORK/javac.log" || { cat "$WORK/javac.log" >&2; rm -rf "$tmp"; die "javac failed"; }
  echo "$want" >"$tmp/.thorax-built"
  rm -rf "$CLASSES"
  mv "$tmp" "$CLASSES"
  log "compiled $(basename "$SRC")"
}

cmd_validate() {
  [[ $# -gt 0 ]] || die "validate needs FILE... or -"
  cmd_build
  # Offline by construction: any HTTP(S) connection would go to a closed local port and fail.
  exec "$JAVA" "$HEAP" -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=9 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=9 -Dhttp.nonProxyHosts= \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$LIBS/*:$CLASSES" ThoraxFhirValidator "$@"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  build) cmd_build ;;
  validate) shift; cmd_validate "$@" ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
