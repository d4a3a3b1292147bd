"""The serving image, run as the chart runs it, against the MLflow image on PostgreSQL.

The serving container takes its command, environment, security context and volumes from
`helm template` (tests/containers.py); the tracking server is the MLflow image with the args of
manifests/base/mlflow.yaml, its backend store a real PostgreSQL, its artifacts proxied. Nothing
of the host's environment reaches the service: it loads the champion through the tracking server.
"""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
from containers import (
    Pod,
    changed_outside_volumes,
    claim_folder,
    find,
    render_chart,
    require_image,
    user_id,
)
from test_serving_gunicorn import READING, post, promote_under_load

from predmaint.ingest.broker import free_port, wait_until_answering
from predmaint.registry import CHAMPION, log_and_register, set_alias
from predmaint.training import TrainingConfig, fit

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MODEL = "pm-image"


@pytest.fixture(scope="module")
def server(mlflow_image):
    return mlflow_image


@pytest.fixture(scope="module")
def trained(simulate_frame):
    data = simulate_frame(machines=20, steps=300, seed=4)
    return fit(data, TrainingConfig(trials=1, families=("xgboost",)), with_modes=True)


def _register(trained, uri: str) -> str:
    registered = log_and_register(
        trained, tracking_uri=uri, experiment="image", model_name=MODEL, tags={"data_version": "test"}
    )
    return registered.version


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_image_runs_as_an_unprivileged_numeric_user():
    for name in ("serving", "pipeline", "mlflow"):
        assert user_id(require_image(name)) == "10001:10001", name


def test_the_serving_image_follows_the_champion_of_the_mlflow_image(tmp_path, server, trained, monkeypatch):
    require_image("serving")
    for name, value in server.trainer.items():  # this test registers and promotes, as the pipeline does
        monkeypatch.setenv(name, value)
    tracking = server.uri
    port = free_port()
    mlflow = {"trackingUri": tracking, "modelName": MODEL, "existingSecret": "predmaint-mlflow-reader"}
    docs = render_chart({"serving": {"port": port, "pollSeconds": 1}, "mlflow": mlflow})
    pod = Pod(
        docs,
        find(docs, "Deployment", component="serving"),
        claims={"predmaint-state": claim_folder(tmp_path / "state")},
        secrets={"predmaint-mlflow-reader": server.secret("predmaint-reader")},  # the service reads only
    )
    container = pod.start(f"predmaint-test-serving-{uuid.uuid4().hex[:6]}", extra=["--health-interval", "2s"])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base}/health", container, 120)
        assert _status(f"{base}/ready") == 503  # no champion yet: alive, not ready

        set_alias(tracking, MODEL, CHAMPION, _register(trained, tracking))
        wait_until_answering(f"{base}/ready", container, 120)
        # Each worker finds the first champion at its own poll (serving.pollSeconds): until then
        # it answers 503 "no model is loaded yet", which clients retry. Within two polls all serve.
        deadline = time.monotonic() + 2 * 1 + 5
        answers = [post(f"{base}/predict", READING) for _ in range(10)]
        while any(status != 200 for status, _ in answers[-10:]) and time.monotonic() < deadline:
            answers.append(post(f"{base}/predict", READING))
        assert all(status == 200 for status, _ in answers[-10:]), answers[-1]
        assert answers[-1][1]["predictions"][0]["model_version"] == "1"
        assert container.health() == "healthy"  # the image's own HEALTHCHECK command

        answers = promote_under_load(  # promoted under load
            base, lambda: set_alias(tracking, MODEL, CHAMPION, _register(trained, tracking)), "2"
        )
        assert answers and all(code == 200 for code, _ in answers), {code for code, _ in answers}
        assert {version for _, version in answers} == {"1", "2"} and answers[-1][1] == "2"

        assert container.exec("id", "-u").stdout.strip() == "10001"
        assert container.exec("touch", "/app/written").returncode != 0  # the root filesystem is read-only
        assert changed_outside_volumes(container, pod) == []
    except BaseException:
        print(container.logs()[-4000:])
        raise
    finally:
        container.remove()


def test_the_mlflow_image_lets_only_the_trainer_register_and_move_the_champion(server, trained, monkeypatch):
    from mlflow.exceptions import MlflowException

    from predmaint.registry import RegistryError, alias_version, load_version

    def login(env: dict[str, str]) -> None:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    model = "pm-auth"
    assert _status(f"{server.uri}/api/2.0/mlflow/registered-models/search") == 401  # no user, no answer
    assert _status(f"{server.uri}/health") == 200  # the probes need none
    login(server.trainer)
    registered = log_and_register(
        trained, tracking_uri=server.uri, experiment="auth", model_name=model, tags={"data_version": "t"}
    )
    set_alias(server.uri, model, CHAMPION, registered.version)
    login(server.reader)
    assert load_version(server.uri, model, registered.version).family == "xgboost"  # it reads
    with pytest.raises(MlflowException, match="403"):
        set_alias(server.uri, model, CHAMPION, registered.version)
    with pytest.raises(MlflowException, match="403"):
        log_and_register(trained, tracking_uri=server.uri, experiment="auth", model_name=model, tags={})
    assert alias_version(server.uri, "pm-not-registered-yet", CHAMPION) is None  # 403 for the reader
    login({"MLFLOW_TRACKING_USERNAME": "predmaint-trainer", "MLFLOW_TRACKING_PASSWORD": "not-the-password"})
    with pytest.raises(RegistryError, match="refused the credentials"):
        alias_version(server.uri, model, CHAMPION)
    login({})
    with pytest.raises(RegistryError, match="refused the credentials"):
        alias_version(server.uri, model, CHAMPION)
