{{/* Names. */}}
{{- define "thorax.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "thorax.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: (dict "root" $ "component" "ingest"). */}}
{{- define "thorax.componentName" -}}
{{- printf "%s-%s" (include "thorax.fullname" .root | trunc 52 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "thorax.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: name + instance (+ component). Two releases never select each other's pods. */}}
{{- define "thorax.selectorLabels" -}}
app.kubernetes.io/name: {{ include "thorax.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{- define "thorax.labels" -}}
helm.sh/chart: {{ include "thorax.chart" .root }}
{{ include "thorax.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: thorax
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A stage's consumer group, shared by its env (<SERVICE>_GROUP_ID) and its KEDA trigger. */}}
{{- define "thorax.consumerGroup" -}}
{{- printf "%s-%s" .root.Values.kafka.consumerGroupPrefix .component -}}
{{- end -}}

{{- define "thorax.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "thorax.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: (dict "root" $ "override" $svc.image). A digest wins over the tag. */}}
{{- define "thorax.image" -}}
{{- $img := mergeOverwrite (deepCopy .root.Values.image) (default dict .override) -}}
{{- $tag := default .root.Chart.AppVersion $img.tag -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "thorax.imagePullPolicy" -}}
{{- $img := mergeOverwrite (deepCopy .root.Values.image) (default dict .override) -}}
{{- $img.pullPolicy -}}
{{- end -}}

{{/* Secrets and what needs them. */}}
{{- define "thorax.secretName" -}}
{{- include "thorax.fullname" . -}}
{{- end -}}

{{- define "thorax.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret }}true{{ end -}}
{{- end -}}

{{- define "thorax.databaseSecret" -}}
{{- default (include "thorax.secretName" .) .Values.database.existingSecret -}}
{{- end -}}

{{- define "thorax.saslEnabled" -}}
{{- if ne .Values.kafka.sasl.mechanism "none" }}true{{ end -}}
{{- end -}}

{{- define "thorax.saslSecret" -}}
{{- default (include "thorax.secretName" .) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{/* True when the chart renders its own Secret (values hold a secret). */}}
{{- define "thorax.ownSecret" -}}
{{- if or (and .Values.database.url (not .Values.database.existingSecret)) (and (include "thorax.saslEnabled" .) (not .Values.kafka.sasl.existingSecret)) }}true{{ end -}}
{{- end -}}

{{- define "thorax.jwksConfigMap" -}}
{{- default (printf "%s-jwks" (include "thorax.fullname" .)) .Values.auth.existingJwksConfigMap -}}
{{- end -}}

{{- define "thorax.hasJwksFile" -}}
{{- if and .Values.auth.enabled (or .Values.auth.jwks .Values.auth.existingJwksConfigMap) }}true{{ end -}}
{{- end -}}

{{- define "thorax.modelDir" -}}
{{- if eq .Values.model.source "image" -}}
/opt/thorax/models/{{ .Values.model.name }}
{{- else -}}
/var/lib/thorax/models/{{ .Values.model.name }}
{{- end -}}
{{- end -}}

{{/*
The object store the four services share (OBJECT_STORE_URL): ingest puts claim-checked inputs,
preprocess reads them, inference writes review images, results reads, serves and deletes them.
*/}}
{{- define "thorax.objectStoreKind" -}}
{{- if .Values.objectStore.s3.enabled -}}s3
{{- else if .Values.objectStore.volume.enabled -}}volume
{{- else -}}pod
{{- end -}}
{{- end -}}

{{/* The most pods that use the object store at once: replicas, or an autoscaler's maximum. */}}
{{- define "thorax.objectStorePods" -}}
{{- $pods := 0 -}}
{{- range $c := list "ingest" "preprocess" "inference" "results" -}}
{{- $svc := index $.Values.services $c -}}
{{- if $svc.enabled -}}
{{- $pods = add $pods (ternary $svc.autoscaling.maxReplicas $svc.replicas $svc.autoscaling.enabled) -}}
{{- end -}}
{{- end -}}
{{- $pods -}}
{{- end -}}

{{- define "thorax.objectStoreUrl" -}}
{{- $s3 := .Values.objectStore.s3 -}}
{{- if $s3.enabled -}}
{{- printf "s3://%s" $s3.bucket -}}{{- with trimAll "/" $s3.prefix }}/{{ . }}{{ end -}}
{{- else -}}
file:///var/lib/thorax/objects
{{- end -}}
{{- end -}}

{{- define "thorax.objectStoreClaim" -}}
{{- default (include "thorax.componentName" (dict "root" . "component" "objects")) .Values.objectStore.volume.existingClaim -}}
{{- end -}}

{{/* The S3 endpoint's TCP port for the egress NetworkPolicy: from its URL, else HTTPS. */}}
{{- define "thorax.objectStorePort" -}}
{{- $endpoint := .Values.objectStore.s3.endpoint -}}
{{- if $endpoint -}}
{{- $url := urlParse $endpoint -}}
{{- $hostPort := splitList ":" $url.host -}}
{{- if gt (len $hostPort) 1 -}}{{ last $hostPort }}{{- else if eq $url.scheme "http" -}}80{{- else -}}443{{- end -}}
{{- else -}}
443
{{- end -}}
{{- end -}}

{{/* Checksums of the rendered configuration, so a change rolls the pods. */}}
{{- define "thorax.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/*
Kafka client environment shared by every service and the topics Job: Secret-backed files
mounted under /etc/thorax. The non-secret part lives in the ConfigMap.
*/}}
{{- define "thorax.kafkaVolumeMounts" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  mountPath: /etc/thorax/kafka-tls
  readOnly: true
{{- end }}
{{- if include "thorax.saslEnabled" . }}
- name: kafka-sasl
  mountPath: /etc/thorax/kafka-sasl
  readOnly: true
{{- end }}
{{- end -}}

{{- define "thorax.kafkaVolumes" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
    items:
      - { key: {{ .Values.kafka.tls.caKey | quote }}, path: ca.crt }
      {{- if .Values.kafka.tls.clientAuth }}
      - { key: {{ .Values.kafka.tls.certKey | quote }}, path: tls.crt }
      - { key: {{ .Values.kafka.tls.keyKey | quote }}, path: tls.key }
      {{- end }}
{{- end }}
{{- if include "thorax.saslEnabled" . }}
- name: kafka-sasl
  secret:
    secretName: {{ include "thorax.saslSecret" . }}
    defaultMode: 0440
    items:
      - { key: {{ .Values.kafka.sasl.passwordKey | quote }}, path: password }
{{- end }}
{{- end -}}

{{/* Sanity checks that JSON Schema cannot express. */}}
{{- define "thorax.validate" -}}
{{- if and .Values.kafka.tls.enabled (not .Values.kafka.tls.existingSecret) -}}
{{- fail "kafka.tls.enabled needs kafka.tls.existingSecret (a Secret with the CA bundle)" -}}
{{- end -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.serverName (eq .Values.kafka.client "librdkafka") -}}
{{- fail "kafka.tls.serverName needs kafka.client=kafkajs (librdkafka checks each broker certificate against the host name the broker advertises)" -}}
{{- end -}}
{{- if and (include "thorax.saslEnabled" .) (not .Values.kafka.sasl.username) -}}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.username" -}}
{{- end -}}
{{- if and (include "thorax.saslEnabled" .) (not (or .Values.kafka.sasl.password .Values.kafka.sasl.existingSecret)) -}}
{{- fail "kafka.sasl.mechanism needs kafka.sasl.password or kafka.sasl.existingSecret" -}}
{{- end -}}
{{- if and .Values.serverTls.enabled (not .Values.serverTls.existingSecret) -}}
{{- fail "serverTls.enabled needs serverTls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if and .Values.auth.enabled (not (or .Values.auth.jwksUrl .Values.auth.jwks .Values.auth.existingJwksConfigMap)) -}}
{{- fail "auth.enabled needs auth.jwksUrl, auth.jwks or auth.existingJwksConfigMap" -}}
{{- end -}}
{{- if and (eq .Values.model.source "volume") (not .Values.model.volume.existingClaim) -}}
{{- fail "model.source=volume needs model.volume.existingClaim" -}}
{{- end -}}
{{- if and (eq .Values.model.source "initContainer") (not .Values.model.initContainer.command) -}}
{{- fail "model.source=initContainer needs model.initContainer.command" -}}
{{- end -}}
{{- $store := .Values.objectStore -}}
{{- if and $store.s3.enabled $store.volume.enabled -}}
{{- fail "objectStore: choose one store, objectStore.s3 or objectStore.volume, not both (the four services must share the same one)" -}}
{{- end -}}
{{- if and $store.s3.enabled (not $store.s3.bucket) -}}
{{- fail "objectStore.s3.enabled needs objectStore.s3.bucket" -}}
{{- end -}}
{{- $pods := int (include "thorax.objectStorePods" .) -}}
{{- if and (gt $pods 1) (not (or $store.s3.enabled $store.volume.enabled)) -}}
{{- fail (printf "objectStore: up to %d pods share claim-checked inputs and review images (ingest writes what preprocess reads, inference writes what results serves), so they need one store: set objectStore.s3.enabled=true with objectStore.s3.bucket, or objectStore.volume.enabled=true (a ReadWriteMany claim, objectStore.volume.existingClaim or one the chart creates, mounted at /var/lib/thorax/objects in every pod)" $pods) -}}
{{- end -}}
{{- if and $store.volume.enabled (not $store.volume.existingClaim) (gt $pods 1) (not (has "ReadWriteMany" $store.volume.accessModes)) -}}
{{- fail (printf "objectStore.volume.accessModes must include ReadWriteMany: up to %d pods on different nodes mount the claim at once" $pods) -}}
{{- end -}}
{{- $dimse := .Values.services.ingest.dimse -}}
{{- if and .Values.services.ingest.enabled $dimse.enabled $dimse.externalService.enabled .Values.networkPolicy.enabled (not .Values.networkPolicy.dicomCidrs) -}}
{{- fail "services.ingest.dimse.externalService needs networkPolicy.dicomCidrs (the senders' addresses): the NetworkPolicy admits no one from outside the cluster to the DIMSE port otherwise" -}}
{{- end -}}
{{- $results := .Values.services.results -}}
{{- if and $results.enabled (not (include "thorax.hasDatabase" .)) -}}
{{- if gt (int $results.replicas) 1 -}}
{{- fail "services.results.replicas > 1 needs PostgreSQL (database.url or database.existingSecret): the embedded store has one writer" -}}
{{- end -}}
{{- if $results.autoscaling.enabled -}}
{{- fail "services.results.autoscaling needs PostgreSQL (database.url or database.existingSecret): the embedded store has one writer" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Kafka client settings (non-secret), KEY: value lines: the ConfigMap and the topics Job. */}}
{{- define "thorax.kafkaConfig" -}}
KAFKA_BROKERS: {{ .Values.kafka.brokers | quote }}
KAFKA_DELIVERY: {{ .Values.kafka.delivery | quote }}
KAFKA_CLIENT: {{ .Values.kafka.client | quote }}
TOPIC_STUDIES: {{ .Values.kafka.topics.studies | quote }}
TOPIC_IMAGES: {{ .Values.kafka.topics.images | quote }}
TOPIC_TENSORS: {{ .Values.kafka.topics.tensors | quote }}
TOPIC_FINDINGS: {{ .Values.kafka.topics.findings | quote }}
TOPIC_FINDINGS_SHADOW: {{ .Values.kafka.topics.findingsShadow | quote }}
RESULTS_FHIR_TOPIC: {{ .Values.kafka.topics.fhir | quote }}
KAFKA_TLS: {{ .Values.kafka.tls.enabled | quote }}
{{- if .Values.kafka.tls.enabled }}
KAFKA_TLS_CA_FILE: /etc/thorax/kafka-tls/ca.crt
{{- if .Values.kafka.tls.clientAuth }}
KAFKA_TLS_CERT_FILE: /etc/thorax/kafka-tls/tls.crt
KAFKA_TLS_KEY_FILE: /etc/thorax/kafka-tls/tls.key
{{- end }}
{{- with .Values.kafka.tls.serverName }}
KAFKA_TLS_SERVERNAME: {{ . | quote }}
{{- end }}
{{- end }}
KAFKA_SASL_MECHANISM: {{ .Values.kafka.sasl.mechanism | quote }}
{{- if include "thorax.saslEnabled" . }}
KAFKA_SASL_USERNAME: {{ .Values.kafka.sasl.username | quote }}
KAFKA_SASL_PASSWORD_FILE: /etc/thorax/kafka-sasl/password
{{- end }}
{{- end -}}

{{/* Object-store settings (non-secret), KEY: value lines for the ConfigMap. */}}
{{- define "thorax.objectStoreConfig" -}}
{{- $s3 := .Values.objectStore.s3 -}}
OBJECT_STORE_URL: {{ include "thorax.objectStoreUrl" . | quote }}
OBJECT_STORE_RETENTION_HOURS: {{ .Values.objectStore.retentionHours | toString | quote }}
{{- if $s3.enabled }}
OBJECT_STORE_S3_REGION: {{ $s3.region | quote }}
OBJECT_STORE_S3_FORCE_PATH_STYLE: {{ $s3.forcePathStyle | quote }}
{{- with $s3.endpoint }}
OBJECT_STORE_S3_ENDPOINT: {{ . | quote }}
{{- end }}
{{- if $s3.existingSecret }}
OBJECT_STORE_S3_SECRET_ACCESS_KEY_FILE: "/etc/thorax/object-store/secret-access-key"
{{- end }}
{{- end }}
{{- end -}}
