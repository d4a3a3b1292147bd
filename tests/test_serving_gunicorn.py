"""`predmaint serve`: real gunicorn on 127.0.0.1 following the registry's champion without downtime."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from predmaint.ingest.broker import free_port, wait_until_answering
from predmaint.predlog import read_predictions
from predmaint.registry import CHAMPION, log_and_register, set_alias
from predmaint.training import TrainingConfig, fit

pytestmark = [pytest.mark.integration, pytest.mark.slow]
READING = {
    "machine_id": "M0001",
    "seq": 1,
    "timestamp": "2026-01-01T00:01:00Z",
    "product_type": "M",
    "air_temperature_k": 300.2,
    "process_temperature_k": 310.1,
    "rotational_speed_rpm": 1500,
    "torque_nm": 41.0,
    "tool_wear_min": 120,
}


def post(url: str, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def wait_until_ready(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    """The service (or tracking server) behind `url` answers 200 within `seconds`."""
    wait_until_answering(url, process, seconds)


def start_tracking_server(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """A real MLflow tracking server on loopback, so the test can take the registry away."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    wait_until_ready(f"{uri}/health", server)
    return server, uri


def promote_under_load(
    base: str, promote, new_version: str, seconds: float = 60
) -> list[tuple[int, str | None]]:
    """(status, version) of every answer to four clients while `promote()` moves the champion.

    The clients stop once 20 answers in a row come from `new_version`, or after `seconds`.
    """
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            code, payload = post(f"{base}/predict", READING)
            answers.append((code, payload.get("predictions", [{}])[0].get("model_version")))

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(1)
    promote()
    promoted = time.monotonic()
    while time.monotonic() - promoted < seconds and sum(v == new_version for _, v in answers[-20:]) < 20:
        time.sleep(0.2)
    stop.set()
    for client in clients:
        client.join(10)
    return answers


@pytest.mark.reliability(
    "models", "a registry outage while gunicorn serves", "survived; the loaded champion keeps answering"
)
def test_serve_follows_the_champion_while_requests_flow(tmp_path, simulate_frame, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an outage shows at the next check
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    tracking, uri = start_tracking_server(tmp_path)
    data = simulate_frame(machines=20, steps=300, seed=4)
    trained = fit(data, TrainingConfig(trials=1, families=("xgboost",)), with_modes=True)

    def register() -> str:
        registered = log_and_register(
            trained,
            tracking_uri=uri,
            experiment="serve",
            model_name="pm",
            tags={"data_version": "test"},
            artifact_location=str(tmp_path / "artifacts"),
        )
        return registered.version

    set_alias(uri, "pm", CHAMPION, register())
    port = free_port()
    env = {
        **os.environ,
        "PREDMAINT_MLFLOW__TRACKING_URI": uri,
        "PREDMAINT_MLFLOW__MODEL_NAME": "pm",
        "PREDMAINT_SERVING__PREDICTION_LOG": str(tmp_path / "predictions"),
        "PREDMAINT_SERVING__PREDICTION_LOG_FLUSH_SECONDS": "0.5",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "predmaint"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--poll",
            "0.5",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/ready", server)
        status, body = post(f"{base}/predict", READING)
        assert status == 200 and body["predictions"][0]["model_version"] == "1"

        # a new champion while requests flow
        answers = promote_under_load(base, lambda: set_alias(uri, "pm", CHAMPION, register()), "2", 30)
        assert all(code == 200 for code, _ in answers), {code for code, _ in answers}
        assert {version for _, version in answers} == {"1", "2"}
        assert answers[-1][1] == "2"

        text = scrape(f"{base}/metrics")  # both workers, summed by the multiprocess collector
        assert sample(text, "predmaint_requests_total", endpoint="/predict", status="200") == len(answers) + 1
        assert {v for (n, labels), v in text.items() if n == "predmaint_model_version"} == {2.0}
        assert sample(text, "predmaint_registry_errors_total") == 0

        tracking.terminate()  # the registry goes away
        tracking.wait(30)
        time.sleep(3)
        text = scrape(f"{base}/metrics")
        assert sample(text, "predmaint_registry_errors_total") > 0
        assert {v for (n, labels), v in text.items() if n == "predmaint_registry_up"} == {0.0}
        status, body = post(f"{base}/predict", READING)
        assert status == 200 and body["predictions"][0]["model_version"] == "2"  # still serving
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
        tracking.terminate()
        tracking.wait(30)
    logged = read_predictions(tmp_path / "predictions")  # flushed by each worker at exit
    assert len(logged) == len(answers) + 2
    assert set(logged["model_version"]) == {"1", "2"}


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (n, found), value in samples.items()
        if n == name and all((k, v) in found for k, v in labels.items())
    )
