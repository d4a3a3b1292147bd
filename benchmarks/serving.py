"""Serving throughput and latency: `predmaint serve` beside `mlflow models serve`, same model, same run.

For each model family the recipe trains a champion on a simulated fleet and registers it in a
throw-away MLflow registry (SQLite). Both servers load `models:/<name>@champion` with two
workers; wrk (Debian package) sends single-reading and 100-reading requests at concurrency 1, 8
and 64 and reports throughput and p50/p99 latency. Floors: the in-process cost of one prediction
(`predict_readings` and the compiled path the service uses) and an empty Flask endpoint under
gunicorn with the same settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from predmaint import schema
from predmaint.ingest.broker import free_port, wait_until_answering
from predmaint.simulator import SimulationSpec, simulate

BIN = Path(sys.executable).parent
WORKERS = 2
CONCURRENCY = (1, 8, 64)
BATCHES = (1, 100)
SECONDS = 6
FAMILIES = ("xgboost", "random_forest")
TRIALS = 8


def _readings(count: int) -> list[dict[str, Any]]:
    frame = pd.concat(
        simulate(SimulationSpec(machines=10, steps=max(count // 10, 1), seed=11)), ignore_index=True
    )
    frame = frame.head(count)
    out = []
    for row in frame.to_dict("records"):
        reading = {name: row[name] for name in schema.REQUIRED_FIELDS}
        reading["timestamp"] = row["timestamp"].strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(reading)
    return out


@contextmanager
def _server(command: list[str], ready_url: str, env: dict[str, str]):
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until_answering(ready_url, process)
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, body: bytes, concurrency: int, workdir: Path, token: str | None = None) -> dict[str, float]:
    """Run wrk with a POST body (and a bearer token); throughput, p50/p99 in ms, non-2xx answers."""
    body_file = workdir / f"body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        + (f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else "")
        + f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    threads = min(2, concurrency)
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{SECONDS}s",
            "--latency",
            "--timeout",
            "10s",
        ]
        + ["-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", output, re.M))
    if not {"50", "99"} <= set(percentiles):  # no request answered within the run
        percentiles = {"50": "0us", "99": "0us"}
    summary = output.strip().splitlines()[-2]
    print(f"    {url} {len(body)} bytes, concurrency {concurrency}: {summary}", file=sys.stderr, flush=True)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "p50": _ms(percentiles["50"]),
        "p99": _ms(percentiles["99"]),
        "failed": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def _register(family: str, uri: str, workdir: Path) -> str:
    """Train the recipe's champion of one family on a simulated fleet and register it."""
    from predmaint.registry import CHAMPION, log_and_register, set_alias
    from predmaint.training import TrainingConfig, fit

    frame = pd.concat(simulate(SimulationSpec(machines=20, steps=1000, seed=5)), ignore_index=True)
    trained = fit(frame, TrainingConfig(trials=TRIALS, families=(family,)), with_modes=True)
    name = f"bench-{family}"
    registered = log_and_register(
        trained,
        tracking_uri=uri,
        experiment="bench",
        model_name=name,
        tags={"data_version": "bench"},
        artifact_location=str(workdir / "artifacts"),
    )
    set_alias(uri, name, CHAMPION, registered.version)
    return name


def _in_process(uri: str, name: str, reading: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per single-reading prediction inside one process (best of 3 × 200 calls)."""
    from predmaint.fastpath import compile_bundle
    from predmaint.ingest.parse import parse_items
    from predmaint.model import predict_readings
    from predmaint.registry import alias_version, load_version

    bundle = load_version(uri, name, alias_version(uri, name, "champion"))
    frame = parse_items([json.dumps(reading).encode()]).readings
    compiled = compile_bundle(bundle)
    out = {}
    for label, call in (
        ("predict_readings", lambda: predict_readings(bundle, frame)),
        ("compiled", lambda: compiled.predict(frame)),
    ):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(200):
                call()
            best = min(best, (time.perf_counter() - started) / 200 * 1000)
        out[label] = best
    return out


def _empty_endpoint(workdir: Path, port: int) -> list[str]:
    app = workdir / "empty_app.py"
    app.write_text(
        "from flask import Flask, jsonify\napp = Flask(__name__)\n\n"
        "@app.post('/empty')\ndef empty():\n    return jsonify(ok=True)\n\n"
        "@app.get('/ping')\ndef ping():\n    return 'ok'\n"
    )
    return [
        str(BIN / "gunicorn"),
        "--chdir",
        str(workdir),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
    ] + ["empty_app:app"]


def run() -> tuple[str, list[str]]:
    """Measure both servers for each family; returns the section title and Markdown lines."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: `make system-deps` installs the Debian package")
    workdir = Path(tempfile.mkdtemp(prefix="predmaint-bench-serving-"))
    uri = f"sqlite:///{workdir}/mlflow.db"
    readings = _readings(100)
    bodies = {1: json.dumps(readings[0]).encode(), 100: json.dumps(readings).encode()}
    mlflow_bodies = {n: json.dumps({"dataframe_records": readings[:n]}).encode() for n in BATCHES}
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow runs `uvicorn` from PATH
        "PREDMAINT_MLFLOW__TRACKING_URI": uri,
        "MLFLOW_TRACKING_URI": uri,
    }
    rows: list[str] = []
    floors: list[str] = []

    port = free_port()
    with _server(_empty_endpoint(workdir, port), f"http://127.0.0.1:{port}/ping", env):
        empty = {c: wrk(f"http://127.0.0.1:{port}/empty", bodies[1], c, workdir) for c in CONCURRENCY}
    for family in FAMILIES:
        print(f"  training and registering the {family} champion …", file=sys.stderr, flush=True)
        name = _register(family, uri, workdir)
        inproc = _in_process(uri, name, readings[0])
        floors.append(
            f"| {family} | {inproc['predict_readings']:.2f} ms | {inproc['compiled']:.2f} ms | "
            f"{inproc['predict_readings'] / inproc['compiled']:.0f}× |"
        )
        results: dict[str, dict[tuple[int, int], dict[str, float]]] = {}
        port = free_port()
        ours_env = {
            **env,
            "PREDMAINT_MLFLOW__MODEL_NAME": name,
            "PREDMAINT_SERVING__PREDICTION_LOG": str(workdir / f"predictions-{family}"),
        }
        ours = [
            str(BIN / "predmaint"),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--poll",
            "3600",
        ]
        with _server(ours, f"http://127.0.0.1:{port}/ready", ours_env):
            results["predmaint serve"] = {
                (n, c): wrk(f"http://127.0.0.1:{port}/predict", bodies[n], c, workdir)
                for n in BATCHES
                for c in CONCURRENCY
            }
        port = free_port()
        peer = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{name}@champion",
            "--env-manager",
            "local",
        ]
        peer += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]
        with _server(peer, f"http://127.0.0.1:{port}/ping", env):
            results["mlflow models serve"] = {
                (n, c): wrk(f"http://127.0.0.1:{port}/invocations", mlflow_bodies[n], c, workdir)
                for n in BATCHES
                for c in CONCURRENCY
            }
        for n in BATCHES:
            for c in CONCURRENCY:
                ours_r = results["predmaint serve"][(n, c)]
                peer_r = results["mlflow models serve"][(n, c)]
                cells = [family, n, c]
                cells += [f"{r['rps']:,.0f}" for r in (ours_r,)] + [
                    f"{ours_r[k]:.1f}" for k in ("p50", "p99")
                ]
                cells += [f"{peer_r['rps']:,.0f}"] + [f"{peer_r[k]:.1f}" for k in ("p50", "p99")]
                ratio = f"{ours_r['rps'] / peer_r['rps']:.1f}×" if peer_r["rps"] > 0 else "–"
                cells += [ratio, f"{ours_r['failed']:.0f}/{peer_r['failed']:.0f}"]
                rows.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    shutil.rmtree(workdir, ignore_errors=True)
    lines = [
        "Both servers load the same registered champion (`models:/<name>@champion`, trained by the recipe "
        f"with {TRIALS} trials on a simulated fleet of 20,000 readings) with {WORKERS} workers; load from "
        f"[wrk](https://github.com/wg/wrk) (Debian package) on the same machine, {SECONDS} s per cell, "
        "2 threads. `predmaint serve` answers with explanations (top-3 contributions), failure-mode "
        "probabilities and the prediction log on; `mlflow models serve --env-manager local` calls the "
        "same pyfunc (`dataframe_records` body). Latency in ms.",
        "",
        "| family | readings / request | concurrency | predmaint req/s | p50 | p99 | mlflow req/s | p50 "
        "| p99 | predmaint ÷ mlflow | failed (ours/peer) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Floor — an empty Flask endpoint (POST, JSON answer) under gunicorn, {WORKERS} sync workers, "
        "same body as a single reading:",
        "",
        "| concurrency | req/s | p50 | p99 |",
        "|---:|---:|---:|---:|",
        *[f"| {c} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} |" for c, r in empty.items()],
        "",
        "Floor — one single-reading prediction in process (probability, decision, mode probabilities, "
        "top-3 contributions; best of 3 × 200 calls): the reference `predict_readings` (pandas + "
        "scikit-learn/XGBoost, what the pyfunc runs) and the compiled path the service runs "
        "(`predmaint.fastpath`, treelite):",
        "",
        "| family | predict_readings | compiled | speed-up |",
        "|---|---:|---:|---:|",
        *floors,
    ]
    return "Serving", lines
