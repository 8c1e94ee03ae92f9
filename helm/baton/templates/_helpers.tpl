{{/* Names, labels, image and the checks every template relies on. */}}

{{- define "baton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.fullname" -}}
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

{{/* Name of a component's resources: "<fullname>-<suffix>", kept within 63 characters. */}}
{{- define "baton.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "baton.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.gatewayName" -}}{{ include "baton.componentName" (list . "mcp") }}{{- end -}}

{{- define "baton.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "baton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "baton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "baton.labels" -}}
helm.sh/chart: {{ include "baton.chart" . }}
{{ include "baton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: baton
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (list $ "server") */}}
{{- define "baton.componentLabels" -}}
{{ include "baton.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "baton.componentSelectorLabels" -}}
{{ include "baton.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "baton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "baton.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "baton.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "baton.batondPath" -}}/usr/local/bin/batond{{- end -}}
{{- define "baton.mcpPath" -}}/usr/local/bin/baton-mcp{{- end -}}

{{/* host:port with IPv6 hosts in brackets. (list host port) */}}
{{- define "baton.hostPort" -}}
{{- $host := index . 0 -}}
{{- if contains ":" $host -}}[{{ $host }}]:{{ index . 1 }}{{- else -}}{{ $host }}:{{ index . 1 }}{{- end -}}
{{- end -}}

{{/* The chart's Secret: name, and whether it is needed at all. */}}
{{- define "baton.secretName" -}}{{ include "baton.fullname" . }}{{- end -}}

{{- define "baton.usesPostgres" -}}
{{- if not .Values.database.embedded.enabled -}}true{{- end -}}
{{- end -}}

{{- define "baton.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "baton.chartSecretData" -}}
{{- if and (include "baton.usesPostgres" .) .Values.database.url (not .Values.database.existingSecret) }}
DATABASE_URL: {{ .Values.database.url | b64enc | quote }}
{{- end }}
{{- if and (include "baton.ownerUrlFromValue" .) (not (include "baton.migrationHook" .)) }}
BATON_MIGRATE_DATABASE_URL: {{ .Values.database.migrationUrl | b64enc | quote }}
{{- end }}
{{- if and (include "baton.usesPostgres" .) .Values.database.readUrl (not .Values.database.readExistingSecret) }}
DATABASE_READ_URL: {{ .Values.database.readUrl | b64enc | quote }}
{{- end }}
{{- if and .Values.redis.url (not .Values.redis.existingSecret) }}
REDIS_URL: {{ .Values.redis.url | b64enc | quote }}
{{- end }}
{{- if and .Values.otel.headers (not .Values.otel.headersExistingSecret) }}
OTEL_EXPORTER_OTLP_HEADERS: {{ .Values.otel.headers | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* secretKeyRef of the PostgreSQL URL; (list $ secretName) where secretName is the chart
     Secret to use when the URL comes from values. */}}
{{- define "baton.databaseUrlRef" -}}
{{- $root := index . 0 -}}
secretKeyRef:
  {{- if $root.Values.database.existingSecret }}
  name: {{ $root.Values.database.existingSecret }}
  key: {{ $root.Values.database.existingSecretKey }}
  {{- else }}
  name: {{ index . 1 }}
  key: DATABASE_URL
  {{- end }}
{{- end -}}

{{/* The owner URL for migrations (BATON_MIGRATE_DATABASE_URL): from an existing Secret when
     database.migrationExistingSecretKey is set, from database.migrationUrl otherwise. */}}
{{- define "baton.ownerUrlFromSecret" -}}
{{- if and (include "baton.usesPostgres" .) .Values.database.migrationExistingSecretKey -}}true{{- end -}}
{{- end -}}

{{- define "baton.ownerUrlFromValue" -}}
{{- if and (include "baton.usesPostgres" .) .Values.database.migrationUrl (not .Values.database.migrationExistingSecretKey) -}}true{{- end -}}
{{- end -}}

{{/* Migrations run by the pre-install/pre-upgrade hook Job (it cannot read the release's own
     Secret, which does not exist yet at install). */}}
{{- define "baton.migrationHook" -}}
{{- if and .Values.migrations.enabled .Values.migrations.hook (include "baton.usesPostgres" .) -}}true{{- end -}}
{{- end -}}

{{/* secretKeyRef of the owner URL, or nothing; (list $ secretName) as for baton.databaseUrlRef. */}}
{{- define "baton.ownerUrlRef" -}}
{{- $root := index . 0 -}}
{{- $d := $root.Values.database -}}
{{- if include "baton.ownerUrlFromSecret" $root }}
secretKeyRef:
  name: {{ default $d.existingSecret $d.migrationExistingSecret }}
  key: {{ $d.migrationExistingSecretKey }}
{{- else if include "baton.ownerUrlFromValue" $root }}
secretKeyRef:
  name: {{ index . 1 }}
  key: BATON_MIGRATE_DATABASE_URL
{{- end }}
{{- end -}}

{{/* The Secret holding BATON_KEY_PEPPER: the user's, or the one the chart generates. */}}
{{- define "baton.pepperSecretName" -}}
{{- default (include "baton.componentName" (list . "key-pepper")) .Values.auth.keyPepper.existingSecret -}}
{{- end -}}

{{- define "baton.pepperSecretKey" -}}
{{- if .Values.auth.keyPepper.existingSecret -}}{{ .Values.auth.keyPepper.existingSecretKey }}{{- else -}}BATON_KEY_PEPPER{{- end -}}
{{- end -}}

{{/* The Secret the `helm test` probe reads its API key from. */}}
{{- define "baton.probeKeySecretName" -}}
{{- default (include "baton.componentName" (list . "probe-key")) .Values.tests.apiKeySecret -}}
{{- end -}}

{{/* batond's gRPC address inside the cluster, with the scheme clients use. */}}
{{- define "baton.grpcUrl" -}}
{{- printf "%s://%s.%s.svc:%v" (ternary "https" "http" .Values.tls.enabled) (include "baton.fullname" .) .Release.Namespace .Values.service.grpcPort -}}
{{- end -}}

{{/* The volume "ca" with the CA that signed batond's certificate, for the chart's own clients
     (only the CA is projected: never the server's key). */}}
{{- define "baton.caVolume" -}}
- name: ca
  secret:
    secretName: {{ default .Values.tls.secretName .Values.tls.caSecret }}
    defaultMode: 0444
    items:
      - key: {{ .Values.tls.caKey }}
        path: ca.crt
{{- end -}}

{{/* The most batond replicas that can run at once. */}}
{{- define "baton.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ .Values.autoscaling.maxReplicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{- define "baton.terminationGracePeriodSeconds" -}}
{{- $floor := add .Values.lifecycle.preStopSleepSeconds .Values.config.shutdownDrainSecs .Values.config.shutdownGraceSecs -}}
{{- if .Values.lifecycle.terminationGracePeriodSeconds -}}
{{- .Values.lifecycle.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $floor 10 -}}
{{- end -}}
{{- end -}}

{{/* Kubernetes >= 1.30 runs the native preStop sleep action (PodLifecycleSleepAction, on by default). */}}
{{- define "baton.nativeSleep" -}}
{{- if semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version -}}true{{- end -}}
{{- end -}}

{{- define "baton.preStop" -}}
{{- if gt (int .Values.lifecycle.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    {{- if include "baton.nativeSleep" . }}
    sleep:
      seconds: {{ .Values.lifecycle.preStopSleepSeconds }}
    {{- else }}
    exec:
      command: ["/usr/bin/sleep", {{ .Values.lifecycle.preStopSleepSeconds | quote }}]
    {{- end }}
{{- end }}
{{- end -}}

{{/* OpenTelemetry variables shared by batond and baton-mcp (empty values are left out). */}}
{{- define "baton.otelEnv" -}}
{{- $o := .Values.otel -}}
{{- $vars := dict
    "OTEL_EXPORTER_OTLP_ENDPOINT" $o.endpoint
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" $o.tracesEndpoint
    "OTEL_EXPORTER_OTLP_PROTOCOL" $o.protocol
    "OTEL_RESOURCE_ATTRIBUTES" $o.resourceAttributes
    "OTEL_TRACES_SAMPLER" $o.sampler
    "OTEL_TRACES_SAMPLER_ARG" $o.samplerArg
    "OTEL_EXPORTER_OTLP_TIMEOUT" $o.timeout
    "OTEL_EXPORTER_OTLP_COMPRESSION" $o.compression
    "OTEL_BSP_SCHEDULE_DELAY" $o.bspScheduleDelay
    "OTEL_BSP_MAX_QUEUE_SIZE" $o.bspMaxQueueSize
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" $o.bspMaxExportBatchSize
    "OTEL_SDK_DISABLED" $o.sdkDisabled
    "OTEL_TRACES_EXPORTER" $o.tracesExporter -}}
{{- range $name := keys $vars | sortAlpha }}
{{- $value := index $vars $name }}
{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- if $o.headersExistingSecret }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ $o.headersExistingSecret }}
      key: {{ $o.headersExistingSecretKey }}
{{- else if $o.headers }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ include "baton.secretName" . }}
      key: OTEL_EXPORTER_OTLP_HEADERS
{{- end }}
{{- end -}}

{{/* Combinations that cannot work fail the render with the reason. */}}
{{- define "baton.validate" -}}
{{- $v := .Values -}}
{{- if not $v.image.repository -}}
{{- fail "image.repository is empty: set it to the registry path of the Baton image" -}}
{{- end -}}
{{- if $v.database.embedded.enabled -}}
{{- if or $v.database.url $v.database.existingSecret -}}
{{- fail "database.embedded.enabled is true and a PostgreSQL URL is set (database.url or database.existingSecret): choose one store" -}}
{{- end -}}
{{- if or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled -}}
{{- fail "database.embedded.enabled: the embedded store runs a single replica; set replicaCount: 1 and autoscaling.enabled: false, or use PostgreSQL (database.url or database.existingSecret)" -}}
{{- end -}}
{{- else if not (or $v.database.url $v.database.existingSecret) -}}
{{- fail "no database: set database.url or database.existingSecret to a PostgreSQL URL, or opt in to the embedded single-replica store with database.embedded.enabled=true" -}}
{{- end -}}
{{- if and (gt (int (include "baton.maxReplicas" .)) 1) (not (include "baton.hasRedis" .)) -}}
{{- fail (printf "%d batond replicas need Redis for the cross-replica bus (live streams see other replicas' writes only through it): set redis.url or redis.existingSecret, or run replicaCount: 1 without autoscaling" (int (include "baton.maxReplicas" .))) -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas (%d) is above autoscaling.maxReplicas (%d)" (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (not $v.autoscaling.targetCPUUtilizationPercentage) (not $v.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "autoscaling.enabled needs a target: set autoscaling.targetCPUUtilizationPercentage or autoscaling.targetMemoryUtilizationPercentage" -}}
{{- end -}}
{{- $d := $v.database -}}
{{- if and $d.embedded.enabled (or $d.migrationUrl $d.migrationExistingSecret $d.migrationExistingSecretKey) -}}
{{- fail "database.embedded.enabled is true and an owner URL for migrations is set (database.migrationUrl, database.migrationExistingSecret or database.migrationExistingSecretKey): the embedded store has no roles; unset them" -}}
{{- end -}}
{{- if and $d.migrationUrl $d.migrationExistingSecretKey -}}
{{- fail "database.migrationUrl and database.migrationExistingSecretKey are both set: give the owner URL for migrations one way" -}}
{{- end -}}
{{- if and $d.migrationExistingSecret (not $d.migrationExistingSecretKey) -}}
{{- fail "database.migrationExistingSecret is set without database.migrationExistingSecretKey: name the key of the owner URL in that Secret" -}}
{{- end -}}
{{- if and $d.migrationExistingSecretKey (not $d.migrationExistingSecret) (not $d.existingSecret) -}}
{{- fail "database.migrationExistingSecretKey is set but there is no Secret to read it from: set database.migrationExistingSecret (or database.existingSecret)" -}}
{{- end -}}
{{- if and $v.tls.enabled (not $v.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName: a Secret of type kubernetes.io/tls (tls.crt, tls.key) holding batond's certificate" -}}
{{- end -}}
{{- if and $v.tls.clientCaSecret (not $v.tls.enabled) -}}
{{- fail "tls.clientCaSecret (mTLS) needs tls.enabled=true and tls.secretName: client certificates are checked only on a TLS port" -}}
{{- end -}}
{{- if and $v.tls.clientCaSecret $v.tests.enabled -}}
{{- fail "tls.clientCaSecret (mTLS) with tests.enabled: the `helm test` probe (batond probe) cannot present a client certificate; set tests.enabled=false" -}}
{{- end -}}
{{- if and $v.tls.clientCaSecret $v.gateway.enabled (not $v.gateway.tlsClientSecret) -}}
{{- fail "tls.clientCaSecret (mTLS) with gateway.enabled: batond accepts only clients with a certificate; set gateway.tlsClientSecret to a kubernetes.io/tls Secret with baton-mcp's certificate, signed by the client CA" -}}
{{- end -}}
{{- if and $v.gateway.tlsClientSecret (not $v.tls.clientCaSecret) -}}
{{- fail "gateway.tlsClientSecret is set but batond does not ask for client certificates: set tls.enabled, tls.secretName and tls.clientCaSecret (mTLS), or unset it" -}}
{{- end -}}
{{- if and $v.tls.admin (not $v.tls.enabled) -}}
{{- fail "tls.admin serves the admin port with the gRPC port's certificate: set tls.enabled=true and tls.secretName" -}}
{{- end -}}
{{- $floor := add $v.lifecycle.preStopSleepSeconds $v.config.shutdownDrainSecs $v.config.shutdownGraceSecs -}}
{{- if and $v.lifecycle.terminationGracePeriodSeconds (le (int $v.lifecycle.terminationGracePeriodSeconds) (int $floor)) -}}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must be above lifecycle.preStopSleepSeconds + config.shutdownDrainSecs + config.shutdownGraceSecs (%d), or batond is killed before in-flight calls finish" (int $v.lifecycle.terminationGracePeriodSeconds) (int $floor)) -}}
{{- end -}}
{{- if and $v.podDisruptionBudget.enabled (le (int (include "baton.minReplicas" .)) 1) (ne (toString $v.podDisruptionBudget.minAvailable) "") -}}
{{- fail "podDisruptionBudget.minAvailable with a single batond replica blocks every node drain: run at least 2 replicas (with Redis) or use maxUnavailable" -}}
{{- end -}}
{{- end -}}

{{/* The migration Job's name: fixed for the hook; for a plain Job it follows the image, since
     a Job's pod template is immutable and a new image needs a new Job. */}}
{{- define "baton.migrationJobName" -}}
{{- if .Values.migrations.hook -}}
{{- include "baton.componentName" (list . "migrate") -}}
{{- else -}}
{{- include "baton.componentName" (list . (printf "migrate-%s" (include "baton.image" . | sha256sum | trunc 10))) -}}
{{- end -}}
{{- end -}}

{{- define "baton.minReplicas" -}}
{{- if .Values.autoscaling.enabled -}}{{ .Values.autoscaling.minReplicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}
