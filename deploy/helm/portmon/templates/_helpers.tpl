{{/* The chart name, at most 63 characters (a DNS label). */}}
{{- define "portmon.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name, with the chart name unless it holds it. */}}
{{- define "portmon.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels selecting this release's pods. They never change across upgrades. */}}
{{- define "portmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "portmon.labels" -}}
{{ include "portmon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "portmon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portmon.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portmon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The portmon.toml the ConfigMap holds. */}}
{{- define "portmon.configToml" -}}
{{- .Values.config -}}
{{- end -}}

{{/* HTTP or HTTPS for the kubelet's probes. */}}
{{- define "portmon.probeScheme" -}}
{{- if .Values.webConfig.tls -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
