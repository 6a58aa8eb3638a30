{{/*
Names, labels and the environment shared by the templates.
*/}}

{{- define "cdr.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-prefixed base name (the chart name alone when the release is named after it). */}}
{{- define "cdr.fullname" -}}
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

{{/* Name of one service's objects. Args: dict root, name. */}}
{{- define "cdr.serviceName" -}}
{{- printf "%s-%s" (include "cdr.fullname" .root | trunc 52 | trimSuffix "-") .name -}}
{{- end -}}

{{- define "cdr.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. Arg: root context. */}}
{{- define "cdr.labels" -}}
helm.sh/chart: {{ include "cdr.chart" . }}
app.kubernetes.io/name: {{ include "cdr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cdr-pipeline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one service. Args: dict root, name. */}}
{{- define "cdr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdr.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Labels of one service's objects. Args: dict root, name. */}}
{{- define "cdr.serviceLabels" -}}
{{ include "cdr.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "cdr.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "cdr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cdr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when the Kafka protocol uses SASL / TLS. */}}
{{- define "cdr.kafkaSasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.security.protocol -}}true{{- end -}}
{{- end -}}
{{- define "cdr.kafkaTls" -}}
{{- if has .Values.kafka.security.protocol (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the Kafka SASL passwords (one key per service, plus cdrctl). */}}
{{- define "cdr.kafkaSaslSecret" -}}
{{- default (printf "%s-kafka-sasl" (include "cdr.fullname" .)) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{/* The Secret and key of the hook's Kafka admin password: adminSecret, else
the key `admin` of existingSecret, else a hook-scoped Secret the chart makes
from passwords.admin (pre-install hooks run before the chart's own objects
exist). */}}
{{- define "cdr.hookKafkaSaslSecret" -}}
{{- $s := .Values.kafka.sasl -}}
{{- if $s.adminSecret.name -}}
{{- $s.adminSecret.name -}}
{{- else if $s.existingSecret -}}
{{- $s.existingSecret -}}
{{- else -}}
{{- printf "%s-hook-kafka-admin" (include "cdr.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "cdr.hookKafkaSaslKey" -}}
{{- if .Values.kafka.sasl.adminSecret.name -}}
{{- .Values.kafka.sasl.adminSecret.key -}}
{{- else -}}
admin
{{- end -}}
{{- end -}}
{{/* "true" when the chart makes the hook's Kafka admin Secret. */}}
{{- define "cdr.hookKafkaSecretMade" -}}
{{- $s := .Values.kafka.sasl -}}
{{- if and (include "cdr.kafkaSasl" .) .Values.hooks.migrate.enabled (not $s.adminSecret.name) (not $s.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* The sink's ClickHouse writer Secret; empty when there is no password. */}}
{{- define "cdr.clickhouseWriterSecret" -}}
{{- if .Values.clickhouse.writer.existingSecret -}}
{{- .Values.clickhouse.writer.existingSecret -}}
{{- else if .Values.clickhouse.writer.password -}}
{{- printf "%s-clickhouse-writer" (include "cdr.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "cdr.kafkaCaPath" -}}/etc/ssl/cdr/kafka/ca.crt{{- end -}}
{{- define "cdr.clickhouseCaPath" -}}/etc/ssl/cdr/clickhouse/ca.crt{{- end -}}
{{- define "cdr.kafkaPasswordDir" -}}/var/run/secrets/cdr{{- end -}}

{{/*
Kafka connection environment. Args: dict root, prefix ("CDR__STAGE__KAFKA__"
for a service, "CDR__KAFKA__" for cdrctl), user (SASL user name). The
password is never a value: PASSWORD_FILE names the mounted Secret key.
*/}}
{{- define "cdr.kafkaEnv" -}}
{{- $v := .root.Values.kafka -}}
- name: {{ .prefix }}BROKERS
  value: {{ $v.brokers | quote }}
{{- if $v.topicPrefix }}
- name: {{ .prefix }}TOPIC_PREFIX
  value: {{ $v.topicPrefix | quote }}
{{- end }}
- name: {{ .prefix }}SECURITY__PROTOCOL
  value: {{ $v.security.protocol | quote }}
{{- if and (include "cdr.kafkaTls" .root) $v.security.caSecret.name }}
- name: {{ .prefix }}SECURITY__CA_LOCATION
  value: {{ include "cdr.kafkaCaPath" .root | quote }}
{{- end }}
{{- if include "cdr.kafkaSasl" .root }}
- name: {{ .prefix }}SECURITY__SASL__MECHANISM
  value: {{ $v.sasl.mechanism | quote }}
- name: {{ .prefix }}SECURITY__SASL__USERNAME
  value: {{ .user | quote }}
- name: {{ .prefix }}SECURITY__SASL__PASSWORD_FILE
  value: {{ printf "%s/kafka-password" (include "cdr.kafkaPasswordDir" .root) | quote }}
{{- end }}
{{- end -}}

{{/* Volumes for the Kafka CA and one SASL password. Args: dict root, secret, key. */}}
{{- define "cdr.kafkaVolumes" -}}
{{- $v := .root.Values.kafka -}}
{{- if and (include "cdr.kafkaTls" .root) $v.security.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ $v.security.caSecret.name }}
    defaultMode: 292  # 0444
    items:
      - key: {{ $v.security.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if include "cdr.kafkaSasl" .root }}
- name: kafka-password
  secret:
    secretName: {{ .secret }}
    defaultMode: 288  # 0440: owner and fsGroup 10001 read
    items:
      - key: {{ .key }}
        path: kafka-password
{{- end }}
{{- end -}}

{{- define "cdr.kafkaVolumeMounts" -}}
{{- $v := .Values.kafka -}}
{{- if and (include "cdr.kafkaTls" .) $v.security.caSecret.name }}
- name: kafka-ca
  mountPath: {{ dir (include "cdr.kafkaCaPath" .) }}
  readOnly: true
{{- end }}
{{- if include "cdr.kafkaSasl" . }}
- name: kafka-password
  mountPath: {{ include "cdr.kafkaPasswordDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* ClickHouse environment. Args: dict root, user, secret (Secret name or ""),
key, cluster (true: pass clickhouse.cluster, for `cdrctl migrate`). */}}
{{- define "cdr.clickhouseEnv" -}}
{{- $c := .root.Values.clickhouse -}}
- name: CDR__CLICKHOUSE__URL
  value: {{ $c.url | quote }}
- name: CDR__CLICKHOUSE__DATABASE
  value: {{ $c.database | quote }}
- name: CDR__CLICKHOUSE__USER
  value: {{ .user | quote }}
{{- if .secret }}
- name: CDR__CLICKHOUSE__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}
{{- if and .cluster $c.cluster }}
- name: CDR__CLICKHOUSE__CLUSTER
  value: {{ $c.cluster | quote }}
{{- end }}
{{- if $c.caSecret.name }}
- name: CDR__CLICKHOUSE__CA_CERT
  value: {{ include "cdr.clickhouseCaPath" .root | quote }}
{{- end }}
{{- end -}}

{{- define "cdr.clickhouseVolumes" -}}
{{- with .Values.clickhouse.caSecret }}
{{- if .name }}
- name: clickhouse-ca
  secret:
    secretName: {{ .name }}
    defaultMode: 292  # 0444
    items:
      - key: {{ .key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "cdr.clickhouseVolumeMounts" -}}
{{- if .Values.clickhouse.caSecret.name }}
- name: clickhouse-ca
  mountPath: {{ dir (include "cdr.clickhouseCaPath" .) }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Checks no schema can express; rendering stops with the reason.
*/}}
{{- define "cdr.validate" -}}
{{- $root := . -}}
{{- $sasl := include "cdr.kafkaSasl" . -}}
{{- if and .Values.kafka.security.caSecret.name (not (include "cdr.kafkaTls" .)) -}}
{{- fail (printf "kafka.security.caSecret is set but protocol %s has no TLS (use SSL or SASL_SSL)" .Values.kafka.security.protocol) -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- if gt (int $svc.replicas) (int $svc.inputPartitions) -}}
{{- fail (printf "services.%s.replicas (%d) exceeds inputPartitions (%d): the extra consumers would idle" $name (int $svc.replicas) (int $svc.inputPartitions)) -}}
{{- end -}}
{{- if $svc.autoscaling.enabled -}}
{{- if gt (int $svc.autoscaling.maxReplicas) (int $svc.inputPartitions) -}}
{{- fail (printf "services.%s.autoscaling.maxReplicas (%d) exceeds inputPartitions (%d): never scale past the input topic's partitions" $name (int $svc.autoscaling.maxReplicas) (int $svc.inputPartitions)) -}}
{{- end -}}
{{- if gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas) -}}
{{- fail (printf "services.%s.autoscaling.minReplicas exceeds maxReplicas" $name) -}}
{{- end -}}
{{- end -}}
{{- if and $svc.dataVolume (contains "deploy/local/data" (default "" $svc.config)) -}}
{{- fail (printf "services.%s.dataVolume is mounted at /srv/cdr/data but services.%s.config still names the image's example data (deploy/local/data); point it at data/..." $name $name) -}}
{{- end -}}
{{- if and $sasl (not $root.Values.kafka.sasl.existingSecret) (not (index $root.Values.kafka.sasl.passwords $name)) -}}
{{- fail (printf "kafka.sasl: protocol %s needs a password for %s: set kafka.sasl.existingSecret (production) or kafka.sasl.passwords.%s" $root.Values.kafka.security.protocol $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (include "cdr.hookKafkaSecretMade" .) (not .Values.kafka.sasl.passwords.admin) -}}
{{- fail "kafka.sasl: the migration hook needs the password of hooks.migrate.kafkaUser: set kafka.sasl.adminSecret (production) or kafka.sasl.passwords.admin" -}}
{{- end -}}
{{- end -}}
