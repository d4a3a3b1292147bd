"""Container images: build time and size, cold start of the serving container, and MLflow's own image.

Cold builds run with `docker build --no-cache` on the base already built (the base's own cold
build is measured apart, under a throw-away tag); warm builds repeat the command with every
input unchanged. The cold start is the time from `docker run` of the serving image (run as the
chart runs it: read-only root, uid 10001, no capabilities, tmpfs /tmp) to its first 200 from
`/ready` against a tracking server that already has a champion. The peer is the image
`mlflow models generate-dockerfile --env-manager local` writes for the same champion, built on the
same base and with the project wheel added (the registered model imports predmaint, which
MLflow's generated image does not install), answering `/invocations` behind its nginx.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.serving import _readings, _server, wrk
from predmaint.ingest.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)[1]
DOCKERFILES = {
    "serving": "serving/Dockerfile",
    "pipeline": "docker/pipeline.Dockerfile",
    "mlflow": "docker/mlflow.Dockerfile",
}
STARTS = 3
CONCURRENCY = 8


def _docker(*args: str, timeout: float = 1800) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


def _size(image: str) -> int:
    return int(json.loads(_docker("image", "inspect", image))[0]["Size"])


def _timed(command: list[str], **kwargs: Any) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed: {(done.stdout + done.stderr)[-2000:]}")
    return time.perf_counter() - started


def _base() -> str:
    return subprocess.run(
        [str(ROOT / "docker" / "base-image.sh"), "resolve"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _base_cold() -> tuple[float, int] | None:
    """Seconds and bytes of a cold build of the Debian base, under a throw-away tag."""
    if _base() != "predmaint/python:3.11-bookworm":
        return None  # the pinned python image is used here: nothing is built
    tag = f"predmaint/python:bench-{os.getpid()}"
    try:
        seconds = _timed(
            [str(ROOT / "docker" / "base-image.sh"), "build"], env={**os.environ, "BASE_IMAGE_TAG": tag}
        )
        return seconds, _size(tag)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def _builds(base: str) -> list[tuple[str, float, float, int]]:
    """(image, cold seconds, warm seconds, bytes) for each image of `make images`."""
    rows = []
    for name, dockerfile in DOCKERFILES.items():
        tag = f"predmaint/{name}:{VERSION}"
        command = ["docker", "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}"]
        command += ["-f", dockerfile, "-t", tag, "."]
        print(f"  cold build of {tag} …", file=sys.stderr, flush=True)
        cold = _timed([*command[:2], "--no-cache", *command[2:]])
        warm = _timed(command)
        rows.append((tag, cold, warm, _size(tag)))
        print(
            f"  {tag}: cold {cold:.0f} s, warm {warm:.1f} s, {rows[-1][3] / 2**20:,.0f} MiB", file=sys.stderr
        )
    return rows


def _champion(workdir: Path, uri: str) -> str:
    """A small XGBoost champion registered in the tracking server; returns its model name."""
    import pandas as pd

    from predmaint.registry import CHAMPION, log_and_register, set_alias
    from predmaint.simulator import SimulationSpec, simulate
    from predmaint.training import TrainingConfig, fit

    frame = pd.concat(simulate(SimulationSpec(machines=20, steps=600, seed=5)), ignore_index=True)
    trained = fit(frame, TrainingConfig(trials=2, families=("xgboost",)), with_modes=True)
    registered = log_and_register(
        trained, tracking_uri=uri, experiment="bench-images", model_name="bench-images", tags={}
    )
    set_alias(uri, "bench-images", CHAMPION, registered.version)
    return "bench-images"


def _cold_start(run: list[str], ready: str, name: str) -> float:
    """Seconds from `docker run` to the first 200 from `ready`; the container is removed after."""
    started = time.perf_counter()
    _docker("run", "--detach", "--name", name, *run)
    try:
        _wait(ready)
        return time.perf_counter() - started
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _wait(url: str, seconds: float = 300) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            _get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def _get(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        if response.status != 200:
            raise OSError(response.status)


def _serving_run(uri: str, model: str, port: int) -> list[str]:
    return [
        "--network", "host", "--user", "10001:10001", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,exec,mode=1777,size=1g",
        "--tmpfs", "/app/.predmaint:rw,mode=1777",
        "--env", f"PREDMAINT_MLFLOW__TRACKING_URI={uri}", "--env", f"PREDMAINT_MLFLOW__MODEL_NAME={model}",
        "--env", f"PREDMAINT_SERVING__PORT={port}",
        f"predmaint/serving:{VERSION}", "serve", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def _mlflow_image(workdir: Path, uri: str, model: str, base: str) -> tuple[str, float, int]:
    """MLflow's generated serving image of the champion on `base`: (tag, build seconds, bytes)."""
    folder = workdir / "mlflow-docker"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    subprocess.run(
        [str(BIN / "mlflow"), "models", "generate-dockerfile", "-m", f"models:/{model}@champion",
         "-d", str(folder), "--env-manager", "local"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    subprocess.run(
        [str(BIN / "uv") if (BIN / "uv").exists() else str(ROOT / ".tools/uv/bin/uv"), "build", "--wheel",
         "--out-dir", str(folder / "wheel"), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    dockerfile = folder / "Dockerfile"
    text = dockerfile.read_text()
    text = re.sub(r"^FROM \S+", f"FROM {base}", text, count=1, flags=re.M)
    wheel = next((folder / "wheel").glob("*.whl")).name
    # The registered model imports predmaint, which its requirements cannot name (it is not on the
    # package index), nor predmaint's own small dependencies: the generated image gets the wheel and
    # the serving image's hash-locked set, the same libraries at the same versions.
    shutil.copy(ROOT / "docker" / "serving-requirements.txt", folder / "serving-requirements.txt")
    text, added = re.subn(
        r"^COPY model_dir ",
        "COPY serving-requirements.txt /tmp/serving-requirements.txt\n"
        "RUN pip install --require-hashes -r /tmp/serving-requirements.txt\n"
        f"COPY wheel/{wheel} /tmp/{wheel}\nRUN pip install --no-deps /tmp/{wheel}\nCOPY model_dir ",
        text,
        count=1,
        flags=re.M,
    )
    if not added:
        raise RuntimeError(f"no `COPY model_dir` in MLflow's generated Dockerfile:\n{text}")
    dockerfile.write_text(text)
    tag = "predmaint/bench-mlflow-models:latest"
    seconds = _timed(["docker", "build", "--network", "host", "--no-cache", "-t", tag, str(folder)])
    return tag, seconds, _size(tag)


def run() -> tuple[str, list[str]]:
    """Measure and return the report section."""
    base = _base()
    workdir = Path(tempfile.mkdtemp(prefix="bench-images-"))
    base_cold = _base_cold()
    builds = _builds(base)

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
              "--artifacts-destination", str(workdir / "mlartifacts"), "--host", "127.0.0.1", "--port",
              str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with _server(server, f"{uri}/health", env):
        model = _champion(workdir, uri)
        serve_port = free_port()
        ours = _serving_run(uri, model, serve_port)
        starts = [
            _cold_start(ours, f"http://127.0.0.1:{serve_port}/ready", f"bench-serving-{os.getpid()}-{i}")
            for i in range(STARTS)
        ]
        peer_tag, peer_build, peer_size = _mlflow_image(workdir, uri, model, base)
        peer_port = free_port()
        peer = ["--publish", f"127.0.0.1:{peer_port}:8080", "--env", "MLFLOW_MODELS_WORKERS=2", peer_tag]
        peer_starts = [
            _cold_start(peer, f"http://127.0.0.1:{peer_port}/ping", f"bench-mlflow-{os.getpid()}-{i}")
            for i in range(STARTS)
        ]
        reading = _readings(1)[0]
        throughput = {}
        for label, run_args, url, body in (
            ("predmaint serving image", ours, f"http://127.0.0.1:{serve_port}/predict", reading),
            ("MLflow's generated image", peer, f"http://127.0.0.1:{peer_port}/invocations",
             {"dataframe_records": [reading]}),
        ):  # fmt: skip
            name = f"bench-load-{os.getpid()}-{len(throughput)}"
            _docker("run", "--detach", "--name", name, *run_args)
            try:
                _wait(url.rsplit("/", 1)[0] + ("/ready" if "predict" in url else "/ping"))
                throughput[label] = wrk(url, json.dumps(body).encode(), CONCURRENCY, workdir)
            finally:
                subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "rmi", "-f", peer_tag], capture_output=True)

    mib = 1024 * 1024
    lines = [
        f"`make images` on the base `{base}`. *Cold*: `docker build --no-cache` (every layer built, "
        "packages downloaded from the package index); *warm*: the same build again, nothing changed. "
        "Sizes as `docker image inspect` reports them (uncompressed, base included).",
        "",
        "| image | cold build | warm build | size |",
        "|---|---:|---:|---:|",
    ]
    if base_cold:
        lines.append(
            f"| Python base from Debian packages (`make base-image`) | {base_cold[0]:.0f} s | "
            f"0 s (reused) | {base_cold[1] / mib:,.0f} MiB |"
        )
    for tag, cold, warm, size in builds:
        lines.append(f"| `{tag}` | {cold:.0f} s | {warm:.1f} s | {size / mib:,.0f} MiB |")
    ratio = peer_size / next(size for tag, _, _, size in builds if "serving" in tag)
    lines += [
        "",
        f"Cold start, `docker run` to the first 200 (median of {STARTS}; the champion, a 2-trial XGBoost "
        "with failure-mode models, is downloaded from a tracking server on this machine), and "
        f"single-reading requests at concurrency {CONCURRENCY} (wrk, 2 workers each) against the same "
        "champion in MLflow's generated image (`mlflow models generate-dockerfile --env-manager local`, "
        "FROM replaced by the same base, the project wheel and the serving image's locked set added):",
        "",
        "| image | build (cold) | size | cold start | requests/s | p50 | p99 | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, build, size, cold in (
        ("predmaint serving image (`/ready`)", next(c for t, c, _, _ in builds if "serving" in t),
         next(s for t, _, _, s in builds if "serving" in t), statistics.median(starts)),
        ("MLflow's generated image (`/ping`)", peer_build, peer_size, statistics.median(peer_starts)),
    ):  # fmt: skip
        figures = throughput[
            "predmaint serving image" if label.startswith("predmaint") else "MLflow's generated image"
        ]
        lines.append(
            f"| {label} | {build:.0f} s | {size / mib:,.0f} MiB | {cold:.1f} s | {figures['rps']:,.0f} | "
            f"{figures['p50']:.1f} ms | {figures['p99']:.1f} ms | {figures['failed']} |"
        )
    ours_rps = throughput["predmaint serving image"]["rps"]
    peer_rps = throughput["MLflow's generated image"]["rps"]
    lines += [
        "",
        f"MLflow's image is {ratio:.2f}× the size of the serving image; the serving image answers "
        f"{ours_rps / max(peer_rps, 1e-9):.1f}× its requests per second. Both cold starts count until "
        "the model is loaded and the server answers.",
    ]
    return "Container images", lines
