"""The single-node cluster of cluster/cluster.sh, for tests: kubectl, helm, waits and port-forwards.

The cluster is this machine's own: its API server listens on the address of a bridge that
cluster/cluster.sh made (10.244.0.1), its pods and Services live on that bridge, and its ingress
answers on 127.0.0.1. Tests reach Services by their cluster IPs from this machine (kube-proxy
routes them here too), so no traffic leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from k8s import tool

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "cluster" / "cluster.sh"
TOOLS = REPO / ".tools" / "cluster"
KUBECONFIG = TOOLS / "kubeconfig"
INGRESS = "http://127.0.0.1:80"


def _env() -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(KUBECONFIG)}


def kubectl(
    *args: str, input: str | None = None, timeout: float = 180, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the cluster's own kubectl (built with it) against it."""
    done = subprocess.run(
        [str(TOOLS / "bin" / "kubectl"), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def helm(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm against the cluster."""
    done = subprocess.run(
        [str(tool("helm")), *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def cluster_ip(namespace: str, service: str) -> str:
    """The cluster IP of a Service."""
    return kubectl("-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}").stdout


def pod_names(namespace: str, selector: str) -> list[str]:
    """Names of the pods a label selector matches that are not being deleted."""
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    return [pod["metadata"]["name"] for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def diagnostics(namespace: str) -> str:
    """What a failed test prints: the namespace's pods, events and recent logs."""
    parts = [kubectl("-n", namespace, "get", "pods,jobs,pvc", "-o", "wide", check=False).stdout]
    parts.append(
        kubectl("-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout[-4000:]
    )
    for pod in kubectl("-n", namespace, "get", "pods", "-o", "name", check=False).stdout.split():
        logs = kubectl("-n", namespace, "logs", pod, "--all-containers", "--tail=30", check=False)
        parts.append(f"--- {pod}\n{logs.stdout}{logs.stderr}")
    return "\n".join(parts)


@contextmanager
def port_forward(namespace: str, target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` to TARGET:PORT on a free loopback port; yields that port."""
    process = subprocess.Popen(
        [
            str(TOOLS / "bin" / "kubectl"),
            "-n",
            namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
            target,
            f":{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, (
            f"kubectl port-forward {target}: {line}{process.stdout.read() if process.poll() else ''}"
        )
        yield int(match[1])
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()


def wait_for(predicate, seconds: float, what: str, interval: float = 1.0):
    """Poll PREDICATE until it returns something truthy; fail naming WHAT after SECONDS."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(interval)


@contextmanager
def running_cluster() -> Iterator[Path]:
    """The cluster that answers, or one started here (and stopped again at the end); yields KUBECONFIG."""
    if not (TOOLS / "bin" / "kubelet").exists():
        raise AssertionError(
            "the cluster's binaries are missing: run `make cluster-tools` (make test builds them)"
        )
    started = subprocess.run([str(SCRIPT), "status"], capture_output=True).returncode != 0
    if started:
        subprocess.run([str(SCRIPT), "up"], check=True, timeout=1800)
    try:
        yield KUBECONFIG
    finally:
        if started:
            subprocess.run([str(SCRIPT), "down"], timeout=600)


def example_secrets() -> tuple[str, dict[str, str]]:
    """The Secrets of manifests/secrets/*.example.yaml with fresh values, as docs/deploy.md says.

    Returns the YAML and the value that replaced each placeholder (`CHANGE-ME-<name>` → name),
    one value per name across files: the trainer's password is the same in mlflow-auth and
    predmaint-mlflow.
    """
    values: dict[str, str] = {}

    def fresh(match: re.Match[str]) -> str:
        name = match[1]
        made = "minio-" + secrets.token_hex(4) if name.endswith("-user") else secrets.token_hex(16)
        return values.setdefault(name, made)

    text = ""
    for path in sorted((REPO / "manifests" / "secrets").glob("*.example.yaml")):
        text += "---\n" + re.sub(r"CHANGE-ME-([a-z]+(?:-[a-z]+)*)", fresh, path.read_text())
    return text, values


def mlflow_stack_up() -> dict[str, str]:
    """manifests/overlays/local applied with fresh Secrets, up with its users; the Secrets' values."""
    kubectl("apply", "-f", str(REPO / "manifests" / "base" / "namespaces.yaml"))
    kubectl("create", "namespace", "kubeflow", check=False)
    # A cluster that answered already keeps its user store, which knows the old passwords.
    kubectl(
        "-n", "mlflow", "delete", "job/mlflow-users", "deployment/mlflow", "--ignore-not-found", "--wait=true"
    )
    kubectl("-n", "mlflow", "delete", "pvc/mlflow-auth", "--ignore-not-found", "--wait=true", timeout=200)
    text, values = example_secrets()
    kubectl("apply", "-f", "-", input=text)
    kubectl("apply", "-k", str(REPO / "manifests" / "overlays" / "local"))
    try:
        for workload in ("statefulset/postgres", "statefulset/minio", "deployment/mlflow"):
            kubectl("-n", "mlflow", "rollout", "status", workload, "--timeout=300s", timeout=320)
        for job in ("minio-buckets", "mlflow-users"):
            wait = ("wait", "--for=condition=complete", f"job/{job}", "--timeout=300s")
            kubectl("-n", "mlflow", *wait, timeout=320)
    except AssertionError:
        print(diagnostics("mlflow"))
        raise
    return values


@contextmanager
def mlflow_user(name: str | None, password: str | None = None) -> Iterator[None]:
    """MLflow clients of this process log in as `name` (None: as nobody) while inside."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {key: os.environ.get(key) for key in keys}
    for key, value in zip(keys, (name, password), strict=True):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
