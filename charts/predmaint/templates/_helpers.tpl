{{/*
Chart name, cut at 63 characters (the DNS label limit of Kubernetes names).
*/}}
{{- define "predmaint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: `<release>-<chart>`, or the release name alone when it already contains
the chart name (release `predmaint` gives `predmaint`), cut at 63 characters.
*/}}
{{- define "predmaint.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "predmaint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels of every object.
*/}}
{{- define "predmaint.labels" -}}
helm.sh/chart: {{ include "predmaint.chart" . }}
{{ include "predmaint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: predmaint
{{- end }}

{{/*
Selector labels of the release; each workload adds app.kubernetes.io/component.
*/}}
{{- define "predmaint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "predmaint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the pods run as.
*/}}
{{- define "predmaint.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "predmaint.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Serving and pipeline image references; the tag defaults to the chart's appVersion.
*/}}
{{- define "predmaint.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "predmaint.pipelineImage" -}}
{{- printf "%s:%s" .Values.pipelineImage.repository (default .Chart.AppVersion .Values.pipelineImage.tag) }}
{{- end }}

{{/*
Names of the two PVCs: the sensor store and the state (prediction log, drift guard).
*/}}
{{- define "predmaint.storeClaim" -}}
{{- default (printf "%s-store" (include "predmaint.fullname" .)) .Values.persistence.store.existingClaim }}
{{- end }}

{{- define "predmaint.stateClaim" -}}
{{- default (printf "%s-state" (include "predmaint.fullname" .)) .Values.persistence.state.existingClaim }}
{{- end }}

{{/*
Pod-level settings shared by every pod of the chart: service account, pull secrets, security,
node placement. No pod talks to the Kubernetes API, so the API token is not mounted.
*/}}
{{- define "predmaint.podSpecCommon" -}}
serviceAccountName: {{ include "predmaint.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Environment of every predmaint container: the settings ConfigMap, HOME on the writable /tmp (git,
DVC and MLflow write small files under HOME), and only the keys of mlflow.existingSecret (each
optional) that the container uses. Called with a dict:
  context      the chart's root context
  tracking     MLflow tracking credentials (the prediction service and the drift check)
  objectStore  S3 access keys (the snapshot CronJob pushing to an s3:// DVC remote)
The MLflow server proxies artifacts (--artifacts-destination), so no MLflow client here gets S3
keys or MLFLOW_S3_ENDPOINT_URL; ingestion talks to no MLflow at all and gets neither.
*/}}
{{- define "predmaint.env" -}}
{{- $root := .context }}
{{- $keys := dict }}
{{- if .tracking }}
{{- $_ := set $keys "mlflow_tracking_username" "MLFLOW_TRACKING_USERNAME" }}
{{- $_ := set $keys "mlflow_tracking_password" "MLFLOW_TRACKING_PASSWORD" }}
{{- end }}
{{- if .objectStore }}
{{- $_ := set $keys "aws_access_key_id" "AWS_ACCESS_KEY_ID" }}
{{- $_ := set $keys "aws_secret_access_key" "AWS_SECRET_ACCESS_KEY" }}
{{- end }}
envFrom:
  - configMapRef:
      name: {{ include "predmaint.fullname" $root }}-settings
env:
  - name: HOME
    value: /tmp
  {{- with $root.Values.mlflow.existingSecret }}
  {{- $secret := . }}
  {{- range $key, $env := $keys }}
  - name: {{ $env }}
    valueFrom:
      secretKeyRef:
        name: {{ $secret }}
        key: {{ $key }}
        optional: true
  {{- end }}
  {{- end }}
{{- end }}

{{/*
The git configuration mounted as $HOME/.gitconfig where git runs in the store (gitconfig.yaml).
*/}}
{{- define "predmaint.gitconfigMount" -}}
- name: gitconfig
  mountPath: /tmp/.gitconfig
  subPath: gitconfig
  readOnly: true
{{- end }}

{{- define "predmaint.gitconfigVolume" -}}
- name: gitconfig
  configMap:
    name: {{ include "predmaint.fullname" . }}-git
{{- end }}

{{/*
The /tmp emptyDir volume of every pod (the root filesystem is read-only).
*/}}
{{- define "predmaint.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{/*
The Secret (key `token`) with the bearer token of POST /predict: serving.token.existingSecret, or
the one the chart makes.
*/}}
{{- define "predmaint.predictTokenSecret" -}}
{{- .Values.serving.token.existingSecret | default (printf "%s-predict-token" (include "predmaint.fullname" .)) -}}
{{- end }}

{{/*
A Secret with a random bearer token (key `token`), kept across upgrades: called with the chart's
context, the Secret's name and its component label.
*/}}
{{- define "predmaint.randomTokenSecret" -}}
{{- $existing := lookup "v1" "Secret" .context.Release.Namespace .name }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  labels:
    {{- include "predmaint.labels" .context | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
type: Opaque
data:
  token: {{ if $existing }}{{ index $existing.data "token" }}{{ else }}{{ randAlphaNum 48 | b64enc }}{{ end }}
{{- end }}

{{/*
The Secret (key `token`) with the bearer token of HTTP ingestion: ingest.http.tokenSecret, or the
one the chart makes.
*/}}
{{- define "predmaint.ingestTokenSecret" -}}
{{- .Values.ingest.http.tokenSecret | default (printf "%s-ingest-token" (include "predmaint.fullname" .)) -}}
{{- end }}
