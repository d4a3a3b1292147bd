"""The single-node cluster of cluster/cluster.sh: start times, install to first prediction, the ingress.

- Cold start: `cluster/cluster.sh up` with the node's image store emptied (every image imported
  again from Docker; the binaries and the Docker images already built). Warm start: `up` again
  after `down`, the store kept.
- Install to first prediction: from `helm install` of the chart (a champion already registered in
  the in-cluster MLflow of manifests/overlays/local) to the first 200 from /predict through the
  ingress on 127.0.0.1.
- Through the ingress against direct: wrk on /predict through Traefik (127.0.0.1:80) and on the
  serving Service's cluster IP, side by side in one run.

The cluster is driven with the tests' own helpers (tests/cluster.py, tests/test_cluster.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_cluster import (  # noqa: E402
    CHART,
    MODEL,
    NAMESPACE,
    RELEASE,
    VALUES,
    _predict,
    _token,
    _train,
)
from test_serving_gunicorn import READING  # noqa: E402

from benchmarks.serving import wrk  # noqa: E402
from cluster import (  # noqa: E402
    INGRESS,
    SCRIPT,
    TOOLS,
    cluster_ip,
    helm,
    kubectl,
    mlflow_stack_up,
    mlflow_user,
    port_forward,
)

CONCURRENCY = 8


def _timed_up() -> float:
    began = time.monotonic()
    subprocess.run([str(SCRIPT), "up"], check=True, timeout=3600)
    return time.monotonic() - began


def _down() -> None:
    subprocess.run([str(SCRIPT), "down"], check=True, timeout=600)


def _mlflow_and_champion() -> dict[str, str]:
    from predmaint.registry import CHAMPION, log_and_register, set_alias

    passwords = mlflow_stack_up()
    trained = _train()
    with (
        port_forward("mlflow", "service/mlflow", 5000) as port,
        mlflow_user("predmaint-trainer", passwords["trainer-password"]),
    ):
        uri = f"http://127.0.0.1:{port}"
        registered = log_and_register(
            trained, tracking_uri=uri, experiment="bench", model_name=MODEL, tags={}
        )
        set_alias(uri, MODEL, CHAMPION, registered.version)
    return passwords


def _install_to_first_prediction(workdir: Path, reader_password: str) -> float:
    import yaml

    values = workdir / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("label", "--overwrite", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    kubectl(
        *("-n", NAMESPACE, "create", "secret", "generic", "predmaint-mlflow-reader"),
        "--from-literal=mlflow_tracking_username=predmaint-reader",
        "--from-file=mlflow_tracking_password=/dev/stdin",
        input=reader_password,
    )
    began = time.monotonic()
    helm("install", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values))
    while _predict()[0] != 200:
        if time.monotonic() - began > 900:
            raise RuntimeError("no 200 from /predict through the ingress within 15 minutes")
        time.sleep(0.5)
    return time.monotonic() - began


def run() -> tuple[str, list[str]]:
    """Run the cluster benchmark; (section title, Markdown lines)."""
    import json

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: `make system-deps` installs the Debian package")
    if not (TOOLS / "bin" / "kubelet").exists():
        raise RuntimeError("the cluster's binaries are missing: run `make cluster-tools`")
    _down()
    shutil.rmtree(TOOLS / "containerd", ignore_errors=True)
    cold = _timed_up()
    _down()
    warm = _timed_up()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            passwords = _mlflow_and_champion()
            first = _install_to_first_prediction(workdir, passwords["reader-password"])
            time.sleep(5)  # both pods serving
            body = json.dumps(READING).encode()
            token = _token(f"{RELEASE}-predict-token")  # VALUES turn serving.token on, as the tests do
            through = wrk(f"{INGRESS}/predict", body, CONCURRENCY, workdir, token)
            direct = wrk(
                f"http://{cluster_ip(NAMESPACE, RELEASE)}:80/predict", body, CONCURRENCY, workdir, token
            )
    finally:
        _down()
    ratio = through["rps"] / direct["rps"] if direct["rps"] else float("nan")
    lines = [
        "Command: `make bench BENCH=cluster` (`python -m benchmarks.run cluster`). The cluster of",
        "`make cluster` (cluster/cluster.sh): Kubernetes v1.34.4 built here, one node on containerd, Traefik",
        "as the ingress on 127.0.0.1:80, the chart with 2 serving pods of 2 gunicorn workers each.",
        "",
        "| what | seconds |",
        "|---|---:|",
        f"| cold start (`cluster.sh up`, every image imported into the node) | {cold:.1f} |",
        f"| warm start (`up` after `down`, images kept) | {warm:.1f} |",
        f"| `helm install` to the first 200 from /predict through the ingress | {first:.1f} |",
        "",
        f"/predict with one reading, wrk, concurrency {CONCURRENCY}, {_seconds()} s each, in the same run:",
        "",
        "| path | requests/s | p50 ms | p99 ms | failed |",
        "|---|---:|---:|---:|---:|",
        "| through the ingress (Traefik on 127.0.0.1:80, then the Service: service-upstream) | "
        f"{through['rps']:.0f} | {through['p50']:.1f} | "
        f"{through['p99']:.1f} | {through['failed']} |",
        f"| the Service's cluster IP, direct | {direct['rps']:.0f} | {direct['p50']:.1f} | "
        f"{direct['p99']:.1f} | {direct['failed']} |",
        "",
        f"Through the ingress / direct: {ratio:.2f}×.",
    ]
    return "Single-node cluster", lines


def _seconds() -> int:
    from benchmarks.serving import SECONDS

    return SECONDS
