"""The serving image's dependency set (docker/serving-requirements.txt) is enough to serve a champion.

No image can be built here, so the test builds what the image's builder stage builds — a virtual
environment from the hash-locked requirements plus the project without its dependencies — and
runs `predmaint serve` from it against a real MLflow tracking server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from test_serving_gunicorn import READING, post, start_tracking_server, wait_until_ready

from predmaint.ingest.broker import free_port
from predmaint.registry import CHAMPION, log_and_register, set_alias
from predmaint.training import TrainingConfig, fit

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "docker" / "serving-requirements.txt"
UV = ROOT / ".tools" / "uv" / "bin" / "uv"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _pins(text: str) -> dict[str, str]:
    return {
        name.lower(): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, re.M)
    }


def test_serving_requirements_match_the_lock_and_leave_out_the_heavy_parts():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {package["name"].lower(): package["version"] for package in lock["package"]}
    pins = _pins(REQUIREMENTS.read_text())
    different = {name: (pin, locked.get(name)) for name, pin in pins.items() if locked.get(name) != pin}
    assert not different, f"re-lock docker/serving-requirements.txt (pin, uv.lock): {different}"
    assert {"flask", "gunicorn", "mlflow-skinny", "xgboost-cpu", "treelite", "scikit-learn"} <= set(pins)
    assert not {"mlflow", "dvc", "kfp", "alibi-detect", "optuna", "paho-mqtt"} & set(pins)


def test_the_serving_set_serves_a_registered_champion(tmp_path, simulate_frame):
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": str(venv)}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    for command in (
        [str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)],
        [str(UV), "pip", "install", "--quiet", "--require-hashes", "-r", str(REQUIREMENTS)],
        [str(UV), "pip", "install", "--quiet", "--no-deps", str(ROOT)],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.util as u; print(u.find_spec('dvc'))"],
        capture_output=True,
        text=True,
    )
    assert installed.stdout.strip() == "None"  # the main environment does not leak in

    tracking, uri = start_tracking_server(tmp_path)
    port = free_port()
    server = None
    log = (tmp_path / "serve.log").open("w")  # gunicorn's log, kept for a failing run
    try:
        data = simulate_frame(machines=20, steps=300, seed=4)
        trained = fit(data, TrainingConfig(trials=1, families=("xgboost",)), with_modes=True)
        registered = log_and_register(
            trained,
            tracking_uri=uri,
            experiment="image",
            model_name="pm",
            tags={"data_version": "test"},
            artifact_location=str(tmp_path / "artifacts"),
        )
        set_alias(uri, "pm", CHAMPION, registered.version)
        server = subprocess.Popen(
            [str(venv / "bin" / "predmaint"), "serve", "--port", str(port), "--workers", "1"],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("PREDMAINT_")},
                "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
                "PREDMAINT_MLFLOW__TRACKING_URI": uri,
                "PREDMAINT_MLFLOW__MODEL_NAME": "pm",
                "PREDMAINT_SERVING__PREDICTION_LOG": str(tmp_path / "predictions"),
            },
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        wait_until_ready(f"http://127.0.0.1:{port}/ready", server)
        status, body = post(f"http://127.0.0.1:{port}/predict", READING)
        assert status == 200, (body, (tmp_path / "serve.log").read_text()[-2000:])
        assert body["predictions"][0]["model_version"] == "1" and body["predictions"][0]["top_features"]
    finally:
        for process in (server, tracking):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        log.close()
