"""The chart, the images and the CronJobs on a real single-node Kubernetes (cluster/cluster.sh).

One installation's life, in order, on the cluster make test starts (Kubernetes v1.34 built here;
CoreDNS, Traefik as the nginx ingress class, local-path storage, PostgreSQL, MinIO and Mosquitto
rebuilt here from Go modules or Debian packages, cluster/images.sh):
- the MLflow stack of manifests/ comes up with `kubectl apply -k manifests/overlays/local`, with
  its users: nobody gets in without one, the reader (the service's) registers nothing and moves no
  alias, the trainer does;
- the chart installs with `helm install` into a namespace that enforces the restricted Pod
  Security Standard, and `helm test` passes;
- a champion registered through a port-forward to the in-cluster MLflow answers /predict, with the
  bearer token of serving.token (401 without it), through
  the ingress from 127.0.0.1;
- a promotion, a `helm upgrade` to a new image and a deleted serving pod, each while requests
  flow through the ingress, lose none;
- the ingestion Deployment takes readings through its Service over HTTP, then (after an upgrade
  to ingest.source=mqtt) from the Mosquitto of manifests/mosquitto;
- the snapshot CronJob versions the store volume;
- the drift CronJob writes its JSON log line and submits exactly one run to the KFP stand-in,
  a Service at the chart's default KFP host (no KFP backend runs here: docs/deploy.md).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from containers import require_image
from test_image_pipeline import _git
from test_ingest_mqtt import publish
from test_serving_gunicorn import READING

from cluster import (
    INGRESS,
    REPO,
    cluster_ip,
    diagnostics,
    helm,
    kubectl,
    mlflow_stack_up,
    mlflow_user,
    pod_names,
    port_forward,
    running_cluster,
    wait_for,
)
from predmaint.datasets import to_json_lines
from predmaint.registry import CHAMPION, RegistryError, alias_version, log_and_register, set_alias
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec
from predmaint.training import TrainingConfig, fit

# The first test also starts the cluster (and the installation fixtures): more than the suite's 600 s.
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(1800)]
NAMESPACE = "predmaint"
RELEASE = "predmaint"
# Users of the in-cluster Mosquitto (Secret mosquitto-users): ingestion subscribes, sensors publish.
MQTT_USERS = {"ingest": secrets.token_hex(16), "sensor": secrets.token_hex(16)}
MODEL = "pm-cluster-" + secrets.token_hex(3)  # a registry kept from an earlier run has no champion of it
FLEET = {"machines": 10, "steps": 400, "seed": 7}
CHART = REPO / "charts" / "predmaint"
STANDIN = REPO / "tests" / "kfp_standin.py"
# Requests sized for a 2-core node that also runs the MLflow stack, DNS and the ingress. Traefik
# 3.6 ignores an EndpointSlice change that only marks a pod terminating (fixed in 3.7, which does
# not build here) and goes on routing to it: service-upstream sends through the Service instead,
# where kube-proxy drops a terminating pod at once (docs/deploy.md).
VALUES = {
    "ingress": {"annotations": {"nginx.ingress.kubernetes.io/service-upstream": "true"}},
    # The service logs in to MLflow as the reader (Secret made in `installed`), as docs/deploy.md says.
    "mlflow": {"modelName": MODEL, "existingSecret": "predmaint-mlflow-reader"},
    "serving": {"pollSeconds": 2, "workers": 2, "token": {"enabled": True}},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    "training": {"trials": 1},
    "ingest": {"enabled": True, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
    "snapshot": {"enabled": True, "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}}},
    "drift": {"resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}},
}


@pytest.fixture(scope="module")
def cluster():
    for name in ("serving", "pipeline", "mlflow"):
        require_image(name)
    with running_cluster() as kubeconfig:
        yield kubeconfig


@pytest.fixture(scope="module")
def mlflow_stack(cluster):
    """The MLflow stack of manifests/, applied with `kubectl apply -k`; the values of its Secrets."""
    return mlflow_stack_up()


@pytest.fixture(scope="module")
def kfp_standin(cluster):
    """The KFP stand-in as a Service at the chart's default KFP host (ml-pipeline.kubeflow:8888)."""
    kubectl("create", "namespace", "kubeflow", check=False)
    kubectl(
        "-n", "kubeflow", "delete", "pod", "ml-pipeline", "--ignore-not-found", "--wait=true"
    )  # none recorded
    code = kubectl(
        "-n",
        "kubeflow",
        "create",
        "configmap",
        "kfp-standin",
        f"--from-file={STANDIN}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    kubectl("apply", "-f", "-", input=code.stdout)
    image = require_image("serving")
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "ml-pipeline",
                    "namespace": "kubeflow",
                    "labels": {"app": "ml-pipeline"},
                },
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "standin",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python", "/standin/kfp_standin.py", "--port", "8888"],
                            "ports": [{"containerPort": 8888}],
                            "readinessProbe": {"tcpSocket": {"port": 8888}, "periodSeconds": 1},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "code", "mountPath": "/standin"}],
                        }
                    ],
                    "volumes": [{"name": "code", "configMap": {"name": "kfp-standin"}}],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "ml-pipeline", "namespace": "kubeflow"},
                "spec": {"selector": {"app": "ml-pipeline"}, "ports": [{"port": 8888, "targetPort": 8888}]},
            },
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps(manifest))
    kubectl("-n", "kubeflow", "wait", "--for=condition=Ready", "pod/ml-pipeline", "--timeout=120s")
    return f"http://{cluster_ip('kubeflow', 'ml-pipeline')}:8888"


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def _post(url: str, body: bytes, timeout: float = 30, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


@pytest.fixture(scope="module")
def installed(cluster, mlflow_stack, kfp_standin, tmp_path_factory):
    """The chart installed with `helm install` into a restricted namespace, before any champion.

    Not `--wait`: the serving pods are alive but not ready (503 on /ready) until a champion exists.
    """
    # A cluster that answered already (make cluster) may hold an earlier run's installation.
    helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=180s", timeout=200)
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "--overwrite", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    users = "".join(f"{name}:{password}\n" for name, password in MQTT_USERS.items())
    kubectl(
        *("-n", NAMESPACE, "create", "secret", "generic", "mosquitto-users"),
        "--from-file=passwords=/dev/stdin",
        input=users,
    )
    kubectl(
        *("-n", NAMESPACE, "create", "secret", "generic", "predmaint-mqtt-ingest"),
        "--from-file=password=/dev/stdin",
        input=MQTT_USERS["ingest"],
    )
    kubectl("apply", "-k", str(REPO / "manifests" / "mosquitto"), "-n", NAMESPACE)
    kubectl(
        *("-n", NAMESPACE, "create", "secret", "generic", "predmaint-mlflow-reader"),
        "--from-literal=mlflow_tracking_username=predmaint-reader",
        "--from-file=mlflow_tracking_password=/dev/stdin",
        input=mlflow_stack["reader-password"],
    )
    values = tmp_path_factory.mktemp("values") / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    began = time.monotonic()
    helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values), "--timeout", "5m")
    try:
        kubectl(
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            f"deployment/{RELEASE}-ingest",
            "--timeout=300s",
            timeout=320,
        )
        kubectl("-n", NAMESPACE, "rollout", "status", "deployment/mosquitto", "--timeout=120s", timeout=140)
        wait_for(lambda: _serving_alive(), 300, "the serving pods answering /health")
    except AssertionError:
        print(diagnostics(NAMESPACE))
        raise
    return {"values": values, "began": began}


def _serving_pods() -> list[dict]:
    out = kubectl("-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=serving", "-o", "json")
    return json.loads(out.stdout)["items"]


def _serving_alive() -> bool:
    """Both serving pods started (their startup probe, GET /health, passed)."""
    pods = [pod for pod in _serving_pods() if not pod["metadata"].get("deletionTimestamp")]
    started = [
        pod for pod in pods if all(c.get("started") for c in pod["status"].get("containerStatuses", [{}]))
    ]
    return len(pods) == len(started) == 2


def test_the_mlflow_stack_comes_up_with_kubectl_apply_k(mlflow_stack):
    with port_forward("mlflow", "service/mlflow", 5000) as port:
        status, body = _get(f"http://127.0.0.1:{port}/health")
    assert status == 200, body


def test_the_chart_installs_into_a_restricted_namespace_alive_and_not_ready(installed):
    labels = json.loads(kubectl("get", "namespace", NAMESPACE, "-o", "json").stdout)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for pod in _serving_pods():  # admitted as restricted, running as the image's user
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001
        assert pod["status"]["podIP"]
        status, _ = _get(f"http://{pod['status']['podIP']}:8000/ready")
        assert status == 503  # alive, no champion yet: not ready


def _train():
    import pandas as pd

    from predmaint.simulator import simulate

    frame = pd.concat(simulate(SimulationSpec(**FLEET)), ignore_index=True)
    return fit(frame, TrainingConfig(trials=1, families=("xgboost",)), with_modes=True)


@pytest.fixture(scope="module")
def champion(installed, mlflow_stack):
    """A champion registered in the in-cluster MLflow through a port-forward, as the trainer."""
    trained = _train()

    def register_and_promote() -> str:
        with (
            port_forward("mlflow", "service/mlflow", 5000) as port,
            mlflow_user("predmaint-trainer", mlflow_stack["trainer-password"]),
        ):
            uri = f"http://127.0.0.1:{port}"
            registered = log_and_register(
                trained,
                tracking_uri=uri,
                experiment="cluster",
                model_name=MODEL,
                tags={"data_version": "test"},
            )
            set_alias(uri, MODEL, CHAMPION, registered.version)
        return registered.version

    first = register_and_promote()
    return {"promote": register_and_promote, "first": first}


@functools.cache
def _token(secret: str) -> str:
    """The bearer token the chart drew at random into a Secret (kept across upgrades)."""
    found = kubectl("-n", NAMESPACE, "get", "secret", secret, "-o", "jsonpath={.data.token}")
    return base64.b64decode(found.stdout).decode()


def _predict() -> tuple[int, str | None]:
    """One /predict through the ingress: (status, model version), status 0 for a failed connection."""
    try:
        token = _token(f"{RELEASE}-predict-token")
        status, body = _post(f"{INGRESS}/predict", json.dumps(READING).encode(), timeout=10, token=token)
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)["predictions"][0]["model_version"]
    except (ValueError, KeyError, IndexError):
        return status, None


def test_helm_test_passes_once_a_champion_is_served(installed, champion):
    wait_for(_serving_ready, 240, "the serving pods ready with the champion")
    installed["first_ready"] = time.monotonic() - installed["began"]
    done = helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "3m")  # its pod is deleted once it succeeds
    assert re.search(r"TEST SUITE:\s+predmaint-test-health.*Phase:\s+Succeeded", done.stdout, re.S), (
        done.stdout
    )


def test_predict_answers_through_the_ingress(champion):
    answered = wait_for(
        lambda: (lambda a: a if a[0] == 200 else None)(_predict()), 180, "/predict through the ingress"
    )
    assert answered == (200, champion["first"])
    for token in (None, _token(f"{RELEASE}-predict-token")[::-1]):  # serving.token.enabled
        status, body = _post(f"{INGRESS}/predict", json.dumps(READING).encode(), token=token)
        assert status == 401, body
    status, body = _get(f"{INGRESS}/metrics")
    assert status == 404, "the ingress must not route /metrics"


def test_the_in_cluster_mlflow_lets_only_the_trainer_move_the_champion(champion, mlflow_stack):
    from mlflow.exceptions import MlflowException

    with port_forward("mlflow", "service/mlflow", 5000) as port:
        uri = f"http://127.0.0.1:{port}"
        status, _ = _get(f"{uri}/api/2.0/mlflow/registered-models/search")
        assert status == 401  # nobody gets in without a user
        with mlflow_user("predmaint-reader", mlflow_stack["reader-password"]):  # the service's user
            assert alias_version(uri, MODEL, CHAMPION) == champion["first"]
            with pytest.raises(MlflowException, match="403"):
                set_alias(uri, MODEL, CHAMPION, champion["first"])
        with mlflow_user("predmaint-trainer", "not-the-password"), pytest.raises(RegistryError, match="401"):
            alias_version(uri, MODEL, CHAMPION)


class Load:
    """Four clients posting /predict through the ingress until stopped; keeps every answer."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._clients = [threading.Thread(target=self._run) for _ in range(4)]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(_predict())

    def __enter__(self) -> Load:
        """Start the clients."""
        for client in self._clients:
            client.start()
        time.sleep(1)
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the clients."""
        self._stop.set()
        for client in self._clients:
            client.join(15)

    def failed(self) -> list[tuple[int, str | None]]:
        return [answer for answer in self.answers if answer[0] != 200]


def _serving_ready() -> bool:
    pods = json.loads(
        kubectl(
            "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=serving", "-o", "json"
        ).stdout
    )["items"]
    ready = [
        pod
        for pod in pods
        if not pod["metadata"].get("deletionTimestamp")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    ]
    return len(pods) == len(ready) == 2


def test_a_promotion_under_load_through_the_ingress_loses_no_request(champion):
    with Load() as load:
        second = champion["promote"]()
        wait_for(
            lambda: all(v == second for _, v in load.answers[-20:]) and len(load.answers) > 20,
            120,
            "v2 served",
        )
    assert load.failed() == [], load.failed()[:5]
    assert {version for _, version in load.answers} >= {champion["first"], second}


def test_a_helm_upgrade_to_a_new_image_under_load_loses_no_request(installed, champion):
    base = require_image("serving")
    tag = "upgrade-" + secrets.token_hex(3)
    repository = base.rsplit(":", 1)[0]
    # A new image (another id), as a new release would be: the serving image with one more label.
    built = subprocess.run(
        ["docker", "build", "-q", "--label", f"org.predmaint.test={tag}", "-t", f"{repository}:{tag}", "-"],
        input=f"FROM {base}\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    subprocess.run(
        [str(REPO / "cluster" / "cluster.sh"), "load", f"{repository}:{tag}"], check=True, timeout=600
    )
    with Load() as load:
        helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "-n",
            NAMESPACE,
            "-f",
            str(installed["values"]),
            "--set",
            f"image.tag={tag}",
            "--wait",
            "--timeout",
            "10m",
        )
        wait_for(_serving_ready, 120, "the upgraded serving pods")
        time.sleep(3)
    images = {
        c["image"]
        for pod in pod_names(NAMESPACE, "app.kubernetes.io/component=serving")
        for c in json.loads(kubectl("-n", NAMESPACE, "get", "pod", pod, "-o", "json").stdout)["spec"][
            "containers"
        ]
    }
    assert images == {f"{repository}:{tag}"}
    assert load.answers and load.failed() == [], (len(load.answers), load.failed()[:5])


def test_deleting_a_serving_pod_under_load_loses_no_request(installed, champion):
    [victim, *_] = pod_names(NAMESPACE, "app.kubernetes.io/component=serving")
    with Load() as load:
        kubectl("-n", NAMESPACE, "delete", "pod", victim, "--wait=true", timeout=120)
        wait_for(_serving_ready, 180, "a replacement serving pod")
        time.sleep(3)
    assert load.answers and load.failed() == [], (len(load.answers), load.failed()[:5])


def _readings(**spec) -> list[bytes]:
    import pandas as pd

    from predmaint.simulator import simulate

    frame = pd.concat(simulate(SimulationSpec(**spec)), ignore_index=True)
    return [line.encode() for line in to_json_lines(frame).splitlines()]


def _store_path() -> Path:
    """The host folder local-path provisioned for the store claim."""
    claim = kubectl("-n", NAMESPACE, "get", "pvc", f"{RELEASE}-store", "-o", "jsonpath={.spec.volumeName}")
    volume = kubectl("get", "pv", claim.stdout, "-o", "json")
    spec = json.loads(volume.stdout)["spec"]
    return Path((spec.get("hostPath") or spec.get("local"))["path"])


def _stored() -> int:
    from predmaint.ingest.store import store_stats

    return int(store_stats(_store_path())["readings"])


def test_the_ingestion_deployment_takes_readings_through_its_service_over_http(installed):
    url = f"http://{cluster_ip(NAMESPACE, f'{RELEASE}-ingest')}:8081/readings"
    token = _token(f"{RELEASE}-ingest-token")
    lines = _readings(**FLEET)
    status, body = _post(url, lines[0])
    assert status == 401, body  # nobody writes training data without the token
    status, body = _post(url, lines[0], token=token[::-1])
    assert status == 401, body
    assert _stored() == 0
    accepted = 0
    for start in range(0, len(lines), 1000):
        status, body = _post(url, b"[" + b",".join(lines[start : start + 1000]) + b"]", token=token)
        assert status == 200, body
        accepted += json.loads(body)["accepted"]
    assert accepted == len(lines)
    status, body = _post(url, b'{"machine_id": ', token=token)
    assert status == 400, body  # a broken body is refused, and the process stays up:
    status, body = _post(url, lines[0], token=token)
    assert status == 200 and json.loads(body)["duplicates"] == 1, body
    assert _stored() == len(lines)


def test_the_ingestion_deployment_takes_readings_over_mqtt_from_the_manifests_broker(installed):
    helm(
        *("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(installed["values"])),
        *("--set", "ingest.source=mqtt", "--timeout", "5m"),  # the ingest rollout is waited for below
        *(
            "--set",
            "ingest.mqtt.username=ingest",
            "--set",
            "ingest.mqtt.passwordSecret=predmaint-mqtt-ingest",
        ),
    )
    kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{RELEASE}-ingest", "--timeout=180s")
    broker = cluster_ip(NAMESPACE, "mosquitto")
    before = _stored()
    # The fleet goes on, drifting (sensor bias from the step after the stored ones).
    drifted = _readings(
        **{**FLEET, "steps": FLEET["steps"] + 100}, scenario=Scenario.sensor_bias, onset=FLEET["steps"]
    )
    new = drifted[before:]
    assert len(new) == FLEET["machines"] * 100

    with pytest.raises((RuntimeError, OSError, AssertionError)):  # refused, or never acknowledged
        publish(1883, new[:1], host=broker)  # the broker refuses anonymous publishers
    sensor = {"username": "sensor", "password": MQTT_USERS["sensor"]}

    def arrived() -> bool:
        publish(1883, new, host=broker, **sensor)  # repeated until the subscriber is there
        return _stored() == before + len(new)

    wait_for(arrived, 180, "readings published to the in-cluster mosquitto in the store", interval=5)


def _job_from_cronjob(cronjob: str, name: str, timeout: float = 900) -> str:
    """Run a CronJob now (`kubectl create job --from`), wait for it to complete; its log."""
    kubectl("-n", NAMESPACE, "create", "job", f"--from=cronjob/{cronjob}", name)
    done = kubectl(
        *("-n", NAMESPACE, "wait", f"job/{name}", "--for=condition=complete", f"--timeout={int(timeout)}s"),
        timeout=timeout + 30,
        check=False,
    )
    logs = kubectl("-n", NAMESPACE, "logs", f"job/{name}", check=False)
    assert done.returncode == 0, f"{done.stderr}\n{logs.stdout}{logs.stderr}\n{diagnostics(NAMESPACE)}"
    return logs.stdout + logs.stderr


def test_the_snapshot_cronjob_versions_the_store_volume(installed):
    log = _job_from_cronjob(f"{RELEASE}-snapshot", "snapshot-now")
    version = json.loads(log.strip().splitlines()[-1])
    store = _store_path()
    assert _git(store, "rev-parse", "HEAD") == version["commit"]
    assert _git(store, "status", "--porcelain", "--untracked-files=no") == ""  # all committed
    remote = store / ".dvc-remote"  # the chart's default remote, on the same volume, outside git
    assert any(path.is_file() for path in remote.rglob("*")), "nothing was pushed"
    installed["data_version"] = version["commit"]


def test_the_drift_cronjob_logs_json_and_submits_exactly_one_run(installed, champion, kfp_standin):
    # The check reads the newest drift.window (1,000) predictions of the log: a drifted, labelled
    # window of the fleet goes through the ingress first, as clients with ground truth send it.
    window = _readings(**{**FLEET, "steps": 100, "seed": 8}, scenario=Scenario.sensor_bias, onset=0)
    wait_for(_serving_ready, 240, "the serving pods ready with the champion")
    for start in range(0, len(window), 100):
        batch = b"[" + b",".join(window[start : start + 100]) + b"]"
        status, body = _post(f"{INGRESS}/predict", batch, token=_token(f"{RELEASE}-predict-token"))
        assert status == 200, body
    first = json.loads(_job_from_cronjob(f"{RELEASE}-drift-check", "drift-now").strip().splitlines()[-1])
    assert first["retrain"] and first["triggered_run"], first
    second = json.loads(_job_from_cronjob(f"{RELEASE}-drift-check", "drift-again").strip().splitlines()[-1])
    assert not second["retrain"] and "not retraining" in second["reason"], second
    status, body = _get(f"{kfp_standin}/recorded")
    assert status == 200, body
    recorded = json.loads(body)
    runs = [
        request for request in recorded["requests"] if request[0] == "POST" and request[1].endswith("/runs")
    ]
    assert len(runs) == 1, recorded["requests"]  # exactly one submission
    assert all(
        auth and auth.startswith("Bearer ") for auth in recorded["authorizations"]
    )  # the projected token
    parameters = runs[0][2]["runtime_config"]["parameters"]
    assert parameters["data_version"] == installed["data_version"] and parameters["store"] == "/data/store"
