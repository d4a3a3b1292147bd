"""The Helm chart `charts/predmaint`: lint, render, validate offline, and hold what a reviewer expects.

Every variant (default values and each `ci/*-values.yaml`) is linted with `helm lint --strict`,
rendered with `helm template` and validated by kubeconform against the Kubernetes version in
`tests/k8s.py` (strict, offline schemas). No cluster and no network are needed.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s import KUBERNETES_VERSION, REPO, helm, validate

pytestmark = pytest.mark.integration

CHART = REPO / "charts" / "predmaint"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VARIANTS = [None, *CI_VALUES]  # None: the chart's default values
RELEASE = "predmaint"
KFP_TOKEN_DIR = "/var/run/secrets/kubeflow/pipelines"
# Capabilities and deprecation checks of every helm call use the version kubeconform checks against.
KUBE_VERSION = ("--kube-version", KUBERNETES_VERSION)


def variant_id(values: Path | None) -> str:
    return "default" if values is None else values.name.removesuffix("-values.yaml")


def render(values: Path | None = None, chart: Path = CHART, *extra: str) -> str:
    """`helm template` of the chart as release `predmaint`; fails the test with helm's message."""
    args = ["template", RELEASE, str(chart), "--namespace", "predmaint", *KUBE_VERSION, *extra]
    result = helm(*args, *(["--values", str(values)] if values else []))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return result.stdout


class Rendered:
    """One rendered variant: its values overrides, the YAML text and its objects."""

    def __init__(self, values: Path | None = None) -> None:
        self.overrides = yaml.safe_load(values.read_text(encoding="utf-8")) if values else {}
        self.text = render(values)
        self.objects = [doc for doc in yaml.safe_load_all(self.text) if doc]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert found, f"no {kind} {name} in {[(o['kind'], o['metadata']['name']) for o in self.objects]}"
        return found[0]

    def pod_specs(self) -> dict[str, dict[str, Any]]:
        """Pod spec of every workload, keyed by `Kind/name`."""
        specs = {}
        for obj in self.objects:
            name = f"{obj['kind']}/{obj['metadata']['name']}"
            if obj["kind"] == "Pod":
                specs[name] = obj["spec"]
            elif obj["kind"] == "Deployment":
                specs[name] = obj["spec"]["template"]["spec"]
            elif obj["kind"] == "CronJob":
                specs[name] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return specs

    def settings(self) -> dict[str, str]:
        return self.named("ConfigMap", f"{RELEASE}-settings")["data"]


@pytest.fixture(scope="module", params=VARIANTS, ids=variant_id)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(request.param)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return Rendered()


def variant(name: str) -> Rendered:
    return Rendered(CHART / "ci" / f"{name}-values.yaml")


def test_ci_variants_cover_the_switches() -> None:
    names = {variant_id(path) for path in CI_VALUES}
    assert {"drift-off", "ingress-off", "autoscaling-on", "ingest-mqtt", "everything-on"} <= names


@pytest.mark.parametrize("values", VARIANTS, ids=variant_id)
def test_helm_lint_strict(values: Path | None) -> None:
    result = helm(
        "lint", "--strict", *KUBE_VERSION, str(CHART), *(["--values", str(values)] if values else [])
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_variant_is_valid_kubernetes(rendered: Rendered) -> None:
    validate(rendered.text)


def test_pods_run_restricted(rendered: Rendered) -> None:
    specs = rendered.pod_specs()
    assert specs
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 10001, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            where = f"{name} container {container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert container["resources"]["requests"]["memory"], where
            assert container["resources"]["limits"]["memory"], where


def _writable_mounts(spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    return [
        mount["mountPath"]
        for mount in container.get("volumeMounts", [])
        if not mount.get("readOnly")
        and ("emptyDir" in volumes[mount["name"]] or "persistentVolumeClaim" in volumes[mount["name"]])
    ]


def _on_volume(path: str, mounts: list[str]) -> bool:
    return any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in mounts)


def test_paths_predmaint_writes_are_volumes() -> None:
    """With a read-only root filesystem, every path a command writes must be a mounted volume."""
    everything = variant("everything-on")
    settings = everything.settings()
    writes = {
        # gunicorn heartbeat files, PROMETHEUS_MULTIPROC_DIR (tempfile.gettempdir()), the prediction log
        "Deployment/predmaint": ["/tmp", settings["PREDMAINT_SERVING__PREDICTION_LOG"]],
        # MLflow downloads, the drift guard and reports under state_dir
        "CronJob/predmaint-drift-check": ["/tmp", settings["PREDMAINT_STATE_DIR"] + "/drift"],
        "Deployment/predmaint-ingest": ["/tmp", settings["PREDMAINT_INGEST__STORE"]],
        # git and DVC in the store, DVC's site cache, the default local remote
        "CronJob/predmaint-snapshot": ["/tmp", settings["PREDMAINT_INGEST__STORE"], "/tmp/dvc-site-cache"],
    }
    # The default DVC remote is a directory: the snapshot pushes into it.
    writes["CronJob/predmaint-snapshot"].append(Rendered().settings()["PREDMAINT_DATA__REMOTE"])
    specs = everything.pod_specs()
    for name, paths in writes.items():
        spec = specs[name]
        (container,) = spec["containers"]
        assert not any(env["name"] == "TMPDIR" for env in container.get("env", [])), name
        mounts = _writable_mounts(spec, container)
        for path in paths:
            assert _on_volume(path, mounts), f"{name} writes {path}, not on a writable volume {mounts}"


def test_git_trusts_the_store_where_it_runs() -> None:
    """The store is a volume's root, owned by the provisioner: git refuses it unless listed as safe."""
    everything = variant("everything-on")
    gitconfig = everything.named("ConfigMap", f"{RELEASE}-git")["data"]["gitconfig"]
    store = everything.settings()["PREDMAINT_INGEST__STORE"]
    assert re.search(rf"^\[safe\]\n\s+directory = {store}$", gitconfig, re.MULTILINE), gitconfig
    specs = everything.pod_specs()
    for name in ("CronJob/predmaint-drift-check", "CronJob/predmaint-snapshot"):
        (container,) = specs[name]["containers"]
        home = {env["name"]: env.get("value") for env in container["env"]}["HOME"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "gitconfig"]
        assert (mount["mountPath"], mount["subPath"]) == (f"{home}/.gitconfig", "gitconfig"), name


def test_serving_deployment(default: Rendered) -> None:
    deployment = default.named("Deployment", RELEASE)
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["predmaint", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # room for the first model load
    assert container["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-settings"}}]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    settings = default.settings()
    assert settings["PREDMAINT_MLFLOW__TRACKING_URI"] == "http://mlflow.mlflow.svc.cluster.local:5000"
    assert settings["PREDMAINT_SERVING__PORT"] == "8000"
    service = default.named("Service", RELEASE)
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert default.named("PodDisruptionBudget", RELEASE)["spec"]["minAvailable"] == 1
    assert default.named("ServiceAccount", RELEASE)["automountServiceAccountToken"] is False
    assert not default.of_kind("HorizontalPodAutoscaler")


def test_predict_can_require_a_token_from_a_secret(default: Rendered, tmp_path: Path) -> None:
    (open_container,) = default.named("Deployment", RELEASE)["spec"]["template"]["spec"]["containers"]
    assert "--token-file" not in open_container["command"]
    assert not [s for s in default.of_kind("Secret") if s["metadata"]["name"].endswith("-predict-token")]
    guarded = variant("everything-on")
    spec = guarded.named("Deployment", RELEASE)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    token_file = container["command"][container["command"].index("--token-file") + 1]
    (mount,) = [m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert mount["readOnly"] is True and volume["secret"]["secretName"] == f"{RELEASE}-predict-token"
    secret = guarded.named("Secret", f"{RELEASE}-predict-token")
    assert len(base64.b64decode(secret["data"]["token"])) >= 32  # random, never a default
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"serving": {"token": {"enabled": True, "existingSecret": "mine"}}}))
    named = Rendered(values)
    spec = named.named("Deployment", RELEASE)["spec"]["template"]["spec"]
    assert [v["secret"]["secretName"] for v in spec["volumes"] if v["name"] == "predict-token"] == ["mine"]
    assert not [s for s in named.of_kind("Secret") if s["metadata"]["name"].endswith("-predict-token")]


def test_a_terminating_serving_pod_drains_before_gunicorn_stops(default: Rendered, tmp_path: Path) -> None:
    # tests/test_cluster.py deletes a pod and rolls an upgrade under load with no failed request.
    spec = default.named("Deployment", RELEASE)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert spec["terminationGracePeriodSeconds"] == 35  # the drain, then 30 s for in-flight requests
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"serving": {"drainSeconds": 0}}), encoding="utf-8")
    spec = Rendered(path).named("Deployment", RELEASE)["spec"]["template"]["spec"]
    assert "lifecycle" not in spec["containers"][0] and spec["terminationGracePeriodSeconds"] == 30
    path.write_text(yaml.safe_dump({"serving": {"drainSeconds": -1}}), encoding="utf-8")
    refused = helm("template", RELEASE, str(CHART), *KUBE_VERSION, "--values", str(path))
    assert refused.returncode != 0 and "drainSeconds" in refused.stderr


def test_ingress_routes_predict_to_the_service(rendered: Rendered) -> None:
    ingresses = rendered.of_kind("Ingress")
    if not rendered.overrides.get("ingress", {}).get("enabled", True):
        assert not ingresses
        return
    (ingress,) = ingresses
    backends = {
        path["path"]: path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends["/predict"] == {"name": RELEASE, "port": {"name": "http"}}


def _ingress_paths(ingress: dict[str, Any]) -> dict[str, str]:
    """Path -> pathType of every rule of one Ingress."""
    return {
        path["path"]: path["pathType"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    }


def _routes(path: str, path_type: str, url: str) -> bool:
    """Whether an Ingress path of this type sends `url` to the service (Prefix: by path elements)."""
    if path_type == "Exact":
        return url == path
    prefix = path.rstrip("/")
    return url == prefix or url.startswith(prefix + "/")


def test_ingress_publishes_the_public_endpoints_and_never_metrics(rendered: Rendered) -> None:
    from serving.app import create_app

    app_routes = {rule.rule for rule in create_app().url_map.iter_rules()} - {"/static/<path:filename>"}
    assert {"/predict", "/metrics", "/health", "/model"} <= app_routes

    def published(ingress: dict[str, Any]) -> set[str]:
        paths = _ingress_paths(ingress).items()
        return {url for url in app_routes if any(_routes(path, kind, url) for path, kind in paths)}

    for ingress in rendered.of_kind("Ingress"):
        assert "/predict" in published(ingress)
        assert not published(ingress) & {"/metrics", "/health", "/model"}, _ingress_paths(ingress)
    if not rendered.overrides.get("ingress"):
        (ingress,) = rendered.of_kind("Ingress")
        # The API, its description and readiness, and the shop-floor pages the docs point to.
        public = ["/predict", "/ready", "/openapi.json", "/", "/fleet"]
        assert _ingress_paths(ingress) == dict.fromkeys(public, "Exact")
        assert published(ingress) == set(public)


@pytest.mark.parametrize(
    "path, path_type",
    [("/", "Prefix"), ("/", "ImplementationSpecific"), ("/metrics", "Exact"), ("/metrics/", "Prefix")],
)
def test_ingress_refuses_a_path_that_publishes_metrics(tmp_path: Path, path: str, path_type: str) -> None:
    values = tmp_path / "values.yaml"
    hosts = [
        {
            "host": "",
            "paths": [{"path": "/predict", "pathType": "Exact"}, {"path": path, "pathType": path_type}],
        }
    ]
    values.write_text(yaml.safe_dump({"ingress": {"hosts": hosts}}), encoding="utf-8")
    result = helm("template", RELEASE, str(CHART), *KUBE_VERSION, "--values", str(values))
    assert result.returncode != 0, f"the chart routed {path} ({path_type}) through the ingress"
    assert "would route /metrics through the ingress" in result.stderr


def _body_limit_bytes(ingress: dict[str, Any]) -> int:
    """ingress-nginx's proxy-body-size annotation in bytes (nginx sizes: digits, then b, k, m or g)."""
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    match = re.fullmatch(r"(\d+)([bkmg]?)", size, re.IGNORECASE)  # ingress-nginx's own SizeRegex
    assert match, f"ingress-nginx rejects proxy-body-size {size!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2).lower() or "b")


def _ingress_with(tmp_path: Path, values: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    (ingress,) = Rendered(path).of_kind("Ingress")
    return ingress


def test_ingress_body_limit_lets_the_app_answer_413(default: Rendered, tmp_path: Path) -> None:
    """Bodies just over the app's limit reach the app (its JSON 413), not ingress-nginx's HTML 413."""
    from predmaint.config import ServingSettings

    app_limit = ServingSettings().max_body_bytes
    (ingress,) = default.of_kind("Ingress")
    assert app_limit < _body_limit_bytes(ingress) <= app_limit + (1 << 20) + 1024
    # The chart's fallback is the app's default: naming it explicitly changes nothing.
    explicit = _ingress_with(tmp_path, {"settings": {"PREDMAINT_SERVING__MAX_BODY_BYTES": str(app_limit)}})
    assert _body_limit_bytes(explicit) == _body_limit_bytes(ingress)
    # A larger app limit raises the ingress limit with it; an explicit annotation wins.
    raised = _ingress_with(tmp_path, {"settings": {"PREDMAINT_SERVING__MAX_BODY_BYTES": str(8 << 20)}})
    assert 8 << 20 < _body_limit_bytes(raised) <= (9 << 20) + 1024
    annotations = {"nginx.ingress.kubernetes.io/proxy-body-size": "16m", "example.com/team": "plant"}
    overridden = _ingress_with(tmp_path, {"ingress": {"annotations": annotations}})
    assert overridden["metadata"]["annotations"] == annotations


def test_ingress_class_and_tls_are_configurable() -> None:
    (ingress,) = variant("everything-on").of_kind("Ingress")
    assert ingress["spec"]["ingressClassName"] == "traefik"
    assert ingress["spec"]["tls"] == [{"secretName": "predmaint-tls", "hosts": ["predmaint.example.com"]}]
    assert ingress["spec"]["rules"][0]["host"] == "predmaint.example.com"
    assert not variant("ingress-off").of_kind("Ingress")


def test_cronjobs_never_overlap_and_keep_history(rendered: Rendered) -> None:
    for cronjob in rendered.of_kind("CronJob"):
        spec = cronjob["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert isinstance(spec["schedule"], str)
        assert spec["successfulJobsHistoryLimit"] >= 0 and spec["failedJobsHistoryLimit"] >= 0
        assert spec["startingDeadlineSeconds"] > 0
    # Schedules are quoted in the YAML: `*/30 * * * *` unquoted would not even parse.
    schedules = re.findall(r"^\s+schedule: (.*)$", rendered.text, flags=re.MULTILINE)
    assert len(schedules) == len(rendered.of_kind("CronJob"))
    assert all(re.fullmatch(r'"[^"]+"', schedule) for schedule in schedules), schedules


def test_drift_check_submits_to_kfp_with_a_projected_token(default: Rendered) -> None:
    cronjob = default.named("CronJob", f"{RELEASE}-drift-check")
    assert cronjob["metadata"]["labels"]["app.kubernetes.io/component"] == "drift-check"
    assert cronjob["spec"]["schedule"] == "0 * * * *"
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["image"] == "predmaint/pipeline:0.1.0"
    assert container["command"] == ["predmaint", "drift", "check", "--trigger", "kfp", "--json"]
    (token,) = [volume for volume in spec["volumes"] if "projected" in volume]
    (source,) = token["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == token["name"]]
    assert mount["mountPath"] == KFP_TOKEN_DIR
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["KF_PIPELINES_SA_TOKEN_PATH"] == f"{KFP_TOKEN_DIR}/{source['serviceAccountToken']['path']}"
    settings = default.settings()
    assert settings["PREDMAINT_DRIFT__KFP_HOST"] == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    # The check reads the prediction log the service writes: both mount the same claim.
    serving = default.named("Deployment", RELEASE)["spec"]["template"]["spec"]
    claims = [
        {v["persistentVolumeClaim"]["claimName"] for v in s["volumes"] if "persistentVolumeClaim" in v}
        for s in (serving, spec)
    ]
    assert f"{RELEASE}-state" in claims[0] & claims[1]
    assert not variant("drift-off").of_kind("CronJob")


def test_chart_renders_no_secret_values(rendered: Rendered) -> None:
    # The Secrets the chart makes hold tokens it draws at random; none comes from values.
    made = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    assert made <= {f"{RELEASE}-ingest-token", f"{RELEASE}-predict-token"}, made
    for key, value in rendered.settings().items():
        assert not re.search(r"password|secret_access|token", key, re.IGNORECASE), (key, value)


def test_credentials_come_from_existing_secrets() -> None:
    everything = variant("everything-on")
    specs = everything.pod_specs()
    (drift,) = specs["CronJob/predmaint-drift-check"]["containers"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in drift["env"] if "valueFrom" in e}
    assert secret_env["MLFLOW_TRACKING_PASSWORD"] == {
        "name": "predmaint-mlflow",
        "key": "mlflow_tracking_password",
        "optional": True,
    }
    snapshot = specs["CronJob/predmaint-snapshot"]
    (volume,) = [v for v in snapshot["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "predmaint-gdrive"
    (mount,) = [m for m in snapshot["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    key_file = everything.settings()["PREDMAINT_DATA__GDRIVE_SERVICE_ACCOUNT_JSON"]
    assert key_file == f"{mount['mountPath']}/service-account.json"
    assert everything.settings()["PREDMAINT_DATA__REMOTE"].startswith("gdrive://")
    assert snapshot["containers"][0]["command"] == ["predmaint", "snapshot"]


TRACKING_KEYS = {
    "MLFLOW_TRACKING_USERNAME": "mlflow_tracking_username",
    "MLFLOW_TRACKING_PASSWORD": "mlflow_tracking_password",
}
S3_KEYS = {"AWS_ACCESS_KEY_ID": "aws_access_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key"}
OBJECT_STORE_KEY = re.compile(r"aws_\w*|mlflow_s3_endpoint_url", re.IGNORECASE)


def _from_secret(container: dict[str, Any], secret: str) -> dict[str, str]:
    """Variable -> key of every variable the container takes from the Secret `secret`."""
    return {
        env["name"]: env["valueFrom"]["secretKeyRef"]["key"]
        for env in container.get("env", [])
        if env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == secret
    }


def test_only_the_snapshot_of_an_s3_remote_gets_object_store_keys(tmp_path: Path) -> None:
    """MLflow proxies artifacts: its clients get the tracking credentials and never an S3 key."""
    secret = "predmaint-mlflow"
    values: dict[str, Any] = {
        "mlflow": {"existingSecret": secret},
        "ingest": {"enabled": True},
        "snapshot": {"enabled": True},
        "dvc": {"remote": "s3://dvc/store"},
    }
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    specs = Rendered(path).pod_specs()
    # Ingestion writes the store and talks to no MLflow: it gets no key at all.
    readers = {
        f"Deployment/{RELEASE}": TRACKING_KEYS,
        f"CronJob/{RELEASE}-drift-check": TRACKING_KEYS,
        f"Deployment/{RELEASE}-ingest": {},
    }
    for name, expected in readers.items():
        for container in specs[name]["containers"]:
            taken = _from_secret(container, secret)
            names = [env["name"] for env in container.get("env", [])]
            leaked = [key for key in taken.values() if OBJECT_STORE_KEY.fullmatch(key)]
            leaked += [env for env in names if OBJECT_STORE_KEY.fullmatch(env)]
            assert not leaked, f"{name}/{container['name']} gets object-store credentials {leaked}"
            assert taken == expected, f"{name}/{container['name']}"
    # DVC pushes to an s3:// remote with the AWS keys; nothing else of the Secret reaches it.
    (snapshot,) = specs[f"CronJob/{RELEASE}-snapshot"]["containers"]
    assert _from_secret(snapshot, secret) == S3_KEYS
    for remote in ("/data/store/.dvc-remote", "gdrive://1AbCdEfGhIjKlMnOpQrStUvWxYz"):
        values["dvc"]["remote"] = remote
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        (snapshot,) = Rendered(path).pod_specs()[f"CronJob/{RELEASE}-snapshot"]["containers"]
        assert _from_secret(snapshot, secret) == {}, remote


def test_settings_reach_the_training_pipeline(default: Rendered) -> None:
    """Release `predmaint` gives the ConfigMap keys and the PVC the compiled pipeline mounts."""
    pipeline = (REPO / "pipelines" / "training" / "pipeline.yaml").read_text(encoding="utf-8")
    config_maps = set(re.findall(r"configMapName: (\S+)", pipeline))
    assert config_maps == {f"{RELEASE}-settings"}
    assert set(re.findall(r"configMapKey: (\S+)", pipeline)) <= set(default.settings())
    (claim,) = set(re.findall(r"pvcMount:\n\s+- constant: (\S+)", pipeline))
    store = default.named("PersistentVolumeClaim", claim)
    assert store["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert default.settings()["PREDMAINT_INGEST__STORE"] == "/data/store"  # where pull_data mounts it


def test_autoscaling_replaces_the_replica_count() -> None:
    scaled = variant("autoscaling-on")
    (hpa,) = scaled.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert "replicas" not in scaled.named("Deployment", RELEASE)["spec"]


def test_ingest_from_mqtt_is_one_writer(default: Rendered) -> None:
    mqtt = variant("ingest-mqtt")
    deployment = mqtt.named("Deployment", f"{RELEASE}-ingest")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:4] == [
        "predmaint",
        "ingest",
        "--source",
        "mqtt://mosquitto.messaging.svc.cluster.local:1883/plant/line-1/sensors",
    ]
    assert command[command.index("--client-id") + 1] == "predmaint-ingest-line-1"
    assert command[command.index("--batch-size") + 1] == "5000"
    assert command[command.index("--mqtt-username") + 1] == "ingest"
    password_file = command[command.index("--mqtt-password-file") + 1]
    spec = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in container["volumeMounts"] if password_file.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "predmaint-mqtt-ingest" and mount["readOnly"] is True
    assert not [s for s in mqtt.of_kind("Service") if s["metadata"]["name"].endswith("-ingest")]
    http = variant("everything-on").named("Deployment", f"{RELEASE}-ingest")
    (container,) = http["spec"]["template"]["spec"]["containers"]
    assert container["command"][2:4] == ["--source", "http://0.0.0.0:8081"]
    token_file = container["command"][container["command"].index("--token-file") + 1]
    (mount,) = [m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    (volume,) = [v for v in http["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret = variant("everything-on").named("Secret", volume["secret"]["secretName"])
    assert len(base64.b64decode(secret["data"]["token"])) >= 32  # random, never a default
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert not [s for s in mqtt.of_kind("Secret") if s["metadata"]["name"].endswith("-ingest-token")]
    assert not [d for d in default.of_kind("Deployment") if d["metadata"]["name"].endswith("-ingest")]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    return policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def _egress_ports(policy: dict[str, Any]) -> set[tuple[int | str, str]]:
    """(port, protocol) of every egress rule; each rule opens ports to any address."""
    rules = policy["spec"]["egress"]
    assert all("to" not in rule for rule in rules), rules
    return {(port["port"], port["protocol"]) for rule in rules for port in rule["ports"]}


DNS = {(53, "UDP"), (53, "TCP")}


def test_ingestion_takes_readings_from_named_peers_and_reaches_only_the_broker(tmp_path: Path) -> None:
    http = variant("everything-on")
    policy = http.named("NetworkPolicy", f"{RELEASE}-ingest")
    ingest = http.named("Deployment", f"{RELEASE}-ingest")["spec"]["template"]["metadata"]["labels"]
    serving = http.named("Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy, ingest) and not _selects(policy, serving)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "ingest", "protocol": "TCP"}]
    (container,) = http.pod_specs()[f"Deployment/{RELEASE}-ingest"]["containers"]
    assert [port["name"] for port in container["ports"]] == ["ingest"]
    # This release's pods, then networkPolicy.ingestFrom: pods labelled as ingestion clients.
    release, *others = rule["from"]
    assert release["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "predmaint",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert others == [{"podSelector": {"matchLabels": {"predmaint/ingest-client": "true"}}}]
    assert _egress_ports(policy) == DNS  # no MLflow, no object store
    # Over MQTT it is a client: no connection in, out only to DNS and the broker's port.
    mqtt = variant("ingest-mqtt").named("NetworkPolicy", f"{RELEASE}-ingest")
    assert "Ingress" in mqtt["spec"]["policyTypes"] and mqtt["spec"]["ingress"] == []
    assert _egress_ports(mqtt) == DNS | {(1883, "TCP")}
    # The prediction pods keep their own policy, and the switch turns both off.
    assert _selects(http.named("NetworkPolicy", RELEASE), serving)
    assert not _selects(http.named("NetworkPolicy", RELEASE), ingest)
    path = tmp_path / "values.yaml"
    values = {"ingest": {"enabled": True}, "networkPolicy": {"enabled": False}}
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    assert not Rendered(path).of_kind("NetworkPolicy")
    extra = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 8883, "protocol": "TCP"}]}]
    values = {"ingest": {"enabled": True}, "networkPolicy": {"ingestFrom": [], "ingestExtraEgress": extra}}
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    policy = Rendered(path).named("NetworkPolicy", f"{RELEASE}-ingest")
    assert [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]] == [release]
    assert policy["spec"]["egress"][-1] == extra[0]


def test_helm_test_calls_health(default: Rendered) -> None:
    (pod,) = default.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "predmaint/serving:0.1.0"
    assert f"http://{RELEASE}:80/health" in container["command"][-1]


def render_notes(tmp_path: Path, values: Path | None = None) -> str:
    """NOTES.txt as `helm install` prints it (that needs a cluster), through a copy of the chart."""
    chart = shutil.copytree(CHART, tmp_path / "predmaint")
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes.tpl").write_text(f'{{{{- define "notes" }}}}{notes}{{{{- end }}}}')
    wrapper = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "notes"},
        "data": {"notes": "NOTES"},
    }
    text = yaml.safe_dump(wrapper).replace("NOTES", '{{ include "notes" . | quote }}')
    (chart / "templates" / "notes.yaml").write_text(text)
    return yaml.safe_load(render(values, chart, "--show-only", "templates/notes.yaml"))["data"]["notes"]


def test_notes_say_how_to_reach_predict(tmp_path: Path) -> None:
    notes = render_notes(tmp_path / "default")
    assert "curl -s http://localhost/predict" in notes
    assert "helm test predmaint -n predmaint" in notes
    assert "create job --from=cronjob/predmaint-drift-check" in notes
    forwarded = render_notes(tmp_path / "ingress-off", CHART / "ci" / "ingress-off-values.yaml")
    assert "port-forward svc/predmaint 8000:80" in forwarded
    assert "curl -s http://127.0.0.1:8000/predict" in forwarded
    tls = render_notes(tmp_path / "everything-on", CHART / "ci" / "everything-on-values.yaml")
    assert "curl -s https://predmaint.example.com/predict" in tls


def test_settings_cannot_repeat_what_the_chart_sets() -> None:
    """The schema's list of variables `settings` may not set covers every one the chart sets."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    forbidden = set(schema["properties"]["settings"]["propertyNames"]["not"]["enum"])
    everything = variant("everything-on")
    chart_set = set(everything.settings()) - set(everything.overrides["settings"])
    for spec in everything.pod_specs().values():
        for container in spec["containers"]:
            chart_set |= {env["name"] for env in container.get("env", []) if "value" in env}
    assert chart_set <= forbidden, chart_set - forbidden


# values.schema.json rejects each of these, naming the key.
SCHEMA_VIOLATIONS = {
    "unknown top-level key": ({"replicas": 3}, "replicas"),
    "unknown nested key": ({"drift": {"schedul": "0 * * * *"}}, "schedul"),
    "replicaCount not an integer": ({"replicaCount": "two"}, "replicaCount"),
    "schedule not a string": ({"drift": {"schedule": 5}}, "schedule"),
    "schedule not cron": ({"snapshot": {"schedule": "every night"}}, "schedule"),
    "unknown ingest source": ({"ingest": {"source": "kafka"}}, "source"),
    "port out of range": ({"service": {"port": 70000}}, "port"),
    "secret value instead of a name": (
        {"mlflow": {"existingSecret": {"password": "hunter2"}}},
        "existingSecret",
    ),
    "setting the chart owns": ({"settings": {"PREDMAINT_STATE_DIR": "/elsewhere"}}, "PREDMAINT_STATE_DIR"),
    "body limit not in bytes": (
        {"settings": {"PREDMAINT_SERVING__MAX_BODY_BYTES": "2MiB"}},
        "PREDMAINT_SERVING__MAX_BODY_BYTES",
    ),
}


@pytest.mark.parametrize("command", ["template", "lint"])
@pytest.mark.parametrize("values, key", SCHEMA_VIOLATIONS.values(), ids=SCHEMA_VIOLATIONS.keys())
def test_schema_rejects_bad_values(tmp_path: Path, command: str, values: dict[str, Any], key: str) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    release = [RELEASE] if command == "template" else []
    result = helm(command, *KUBE_VERSION, *release, str(CHART), "--values", str(path))
    assert result.returncode != 0, f"helm {command} accepted {values}"
    assert key in result.stdout + result.stderr


def test_validation_fails_on_a_broken_template(tmp_path: Path) -> None:
    """The checks can fail: a template with a misspelt field renders, and kubeconform rejects it."""
    chart = tmp_path / "predmaint"
    shutil.copytree(CHART, chart)
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text(encoding="utf-8")
    deployment.write_text(text.replace("  replicas: {{", "  replica: {{", 1), encoding="utf-8")
    with pytest.raises(AssertionError, match="replica"):
        validate(render(chart=chart))


def test_validation_fails_when_nothing_was_rendered() -> None:
    with pytest.raises(AssertionError, match="validated nothing"):
        validate("# an empty render\n")
