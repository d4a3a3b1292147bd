"""The pipeline image on its jobs, each run as the chart (or KFP) runs it.

One installation's life in containers, in order: the ingestion Deployment's command takes
readings over HTTP into the store volume; the snapshot CronJob versions that volume (owned by
root, shared through fsGroup, as a provisioner leaves it) and pushes it to the chart's default
DVC remote; the drift CronJob, before any champion exists, says so and exits 0; the training
pipeline runs through kfp.local's DockerRunner, every task in the pipeline image, and registers
and promotes a champion in the MLflow image on PostgreSQL, as the SubprocessRunner does on the
same readings; after the fleet drifts, the drift CronJob submits exactly one run to the KFP
stand-in. Each container takes its command, environment, security context and volumes from
`helm template` (tests/containers.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid

import pytest
from containers import (
    Pod,
    changed_outside_volumes,
    claim_folder,
    find,
    kfp_task_run_args,
    render_chart,
    rendered_secret,
    require_image,
)
from kfp_standin import KfpStandIn
from test_ingest_http import post

from predmaint.datasets import to_json_lines
from predmaint.ingest.broker import free_port, wait_until_answering
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MODEL = "pm-pipeline"
FLEET = {"machines": 20, "steps": 600, "seed": 5}


@pytest.fixture(scope="module")
def install(tmp_path_factory, mlflow_image):
    """Claims (host folders), the KFP stand-in and the chart rendered for this installation."""
    root = tmp_path_factory.mktemp("install")
    claims = {
        "predmaint-store": claim_folder(root / "store"),
        "predmaint-state": claim_folder(root / "state"),
    }
    with KfpStandIn() as kfp:
        values = {
            # The chart's pods log in as the reader, the pipeline's as the trainer (as in a cluster).
            "mlflow": {
                "trackingUri": mlflow_image.uri,
                "modelName": MODEL,
                "existingSecret": "predmaint-mlflow-reader",
            },
            "training": {"trials": 2},
            "ingest": {"enabled": True, "http": {"port": free_port()}},
            "snapshot": {"enabled": True},
            "drift": {"kfpHost": kfp.url},
        }
        docs = render_chart(values)
        secrets = {
            "predmaint-mlflow-reader": mlflow_image.secret("predmaint-reader"),
            "predmaint-mlflow": mlflow_image.secret("predmaint-trainer"),
        }
        yield {"root": root, "claims": claims, "docs": docs, "values": values, "kfp": kfp, "secrets": secrets}


def _pod(install, kind: str, component: str) -> Pod:
    require_image("pipeline")
    workload = find(install["docs"], kind, component=component)
    return Pod(install["docs"], workload, claims=install["claims"], secrets=install["secrets"])


def _readings(**spec) -> list[dict]:
    import pandas as pd

    from predmaint.simulator import simulate

    frame = pd.concat(simulate(SimulationSpec(**spec)), ignore_index=True)
    return [json.loads(line) for line in to_json_lines(frame).splitlines()]


def _git(store, *args: str) -> str:
    """Git in a store the containers wrote (owned by uid 10001, which git checks even for root)."""
    done = subprocess.run(
        ["git", "-c", f"safe.directory={store}", "-C", str(store), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_ingestion_deployment_takes_readings_over_http(install):
    from predmaint.ingest.store import read_store

    pod = _pod(install, "Deployment", "ingest")
    port = install["values"]["ingest"]["http"]["port"]
    token = rendered_secret(install["docs"], "predmaint-ingest-token")["token"]
    container = pod.start(f"predmaint-test-ingest-{uuid.uuid4().hex[:6]}")
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health", container, 120)
        readings = _readings(**FLEET)
        accepted = 0
        for start in range(0, len(readings), 3000):
            body_bytes = json.dumps(readings[start : start + 3000]).encode()
            status, body = post(f"http://127.0.0.1:{port}/readings", body_bytes, token=token)
            assert status == 200, body
            accepted += body["accepted"]
        assert accepted == len(readings) == 12_000
        status, body = post(f"http://127.0.0.1:{port}/readings", b"[]")
        assert status == 401, body  # the pod listens on 0.0.0.0: only with the token
        status, body = post(
            f"http://127.0.0.1:{port}/readings", b'{"machine_id": ', token=token
        )  # broken body
        assert status == 400 and container.running()
        assert changed_outside_volumes(container, pod) == []
        subprocess.run(["docker", "stop", "--time", "30", container.name], check=True, capture_output=True)
        assert container.poll() == 0, container.logs()  # SIGTERM: the last batch committed, clean exit
    finally:
        print(container.logs()[-3000:])
        container.remove()
    assert len(read_store(install["claims"]["predmaint-store"])) == 12_000


def test_the_snapshot_cronjob_versions_a_volume_owned_by_another_uid(install):
    store = claim_folder(install["claims"]["predmaint-store"])
    assert store.stat().st_uid == 0 and not (store / ".git").exists()
    done = _pod(install, "CronJob", "snapshot").run()
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout.strip().splitlines()[-1])
    assert _git(store, "rev-parse", "HEAD") == version["commit"]
    remote = store / ".dvc-remote"  # the chart's default remote, outside git on the same volume
    assert any(path.is_file() for path in remote.rglob("*")), "nothing was pushed"
    assert _git(store, "status", "--porcelain", "--untracked-files=no") == ""  # all committed
    assert _git(store, "ls-files", ".dvc-remote") == ""  # and the remote is not in git
    install["data_version"] = version["commit"]


def test_the_drift_cronjob_without_a_champion_says_so_and_succeeds(install):
    done = _pod(install, "CronJob", "drift-check").run()
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["event"] == "drift_check" and not line["retrain"]
    assert "no champion" in line["reason"], line
    assert install["kfp"].recorded.runs == []


def _champion_metrics(uri: str, name: str) -> tuple[str, dict[str, float]]:
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    version = client.get_model_version_by_alias(name, "champion")
    return version.version, client.get_run(version.run_id).data.metrics


def test_the_pipeline_runs_every_task_in_the_pipeline_image(install, mlflow_image, tmp_path, monkeypatch):
    for name, value in mlflow_image.trainer.items():  # this process reads metrics, runs the subprocess path
        monkeypatch.setenv(name, value)
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore
    from predmaint.retrain import latest_snapshot, run_local
    from predmaint.versioning import remote_config, snapshot

    pipeline_root = claim_folder(install["root"] / "kfp")
    args = kfp_task_run_args(install["docs"], install["claims"], secrets=install["secrets"])
    assert args["environment"]["MLFLOW_TRACKING_USERNAME"] == "predmaint-trainer"
    decision = run_local(install["data_version"], "/data/store", pipeline_root, container_args=args)
    assert decision["promoted"] and decision["champion_version"] == "1", decision
    version, in_images = _champion_metrics(mlflow_image.uri, MODEL)
    assert version == "1"

    # The same readings, versioned here, through the SubprocessRunner against the same server.
    store = tmp_path / "store"
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(SimulationSpec(**FLEET)), writer, threading.Event())
    snapshot(store, remote_config(str(tmp_path / "remote")))
    for key, value in {
        "PREDMAINT_MLFLOW__TRACKING_URI": mlflow_image.uri,
        "PREDMAINT_MLFLOW__MODEL_NAME": f"{MODEL}-subprocess",
        "PREDMAINT_MLFLOW__ARTIFACT_LOCATION": "",
        "PREDMAINT_DATA__REMOTE": str(tmp_path / "remote"),
        "PREDMAINT_TRAINING__TRIALS": "2",
    }.items():
        monkeypatch.setenv(key, value)
    local = run_local(latest_snapshot(store), store, tmp_path / "kfp")
    assert local["promoted"] == decision["promoted"] and local["champion_version"] == "1"
    _, here = _champion_metrics(mlflow_image.uri, f"{MODEL}-subprocess")
    for metric in ("test_f1", "test_precision", "test_recall"):
        assert in_images[metric] == pytest.approx(here[metric], abs=1e-9), metric


def test_the_drift_cronjob_submits_one_run_after_the_fleet_drifts(install):
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore

    store = install["claims"]["predmaint-store"]
    spec = SimulationSpec(**{**FLEET, "steps": 700}, scenario=Scenario.sensor_bias, onset=600)
    with ReadingStore(store) as writer:  # the fleet goes on, drifting; the stored steps are skipped
        run_ingest(SimulatorSource(spec), writer, threading.Event())
    claim_folder(store)
    assert _pod(install, "CronJob", "snapshot").run().returncode == 0
    head = _git(store, "rev-parse", "HEAD")

    drift = _pod(install, "CronJob", "drift-check")
    checks = [drift.run() for _ in range(2)]
    for done in checks:
        assert done.returncode == 0, done.stderr
    first, second = (json.loads(done.stderr.strip().splitlines()[-1]) for done in checks)
    assert first["retrain"] and first["triggered_run"] == "run-1", first["reason"]
    assert not second["retrain"] and "not retraining" in second["reason"], second["reason"]
    recorded = install["kfp"].recorded
    [run] = recorded.runs  # exactly one submission, with the projected token the chart mounts
    assert set(recorded.authorizations) == {"Bearer token-of-the-test"}
    parameters = run["runtime_config"]["parameters"]
    assert parameters["data_version"] == head and parameters["store"] == "/data/store"
    assert os.listdir(install["claims"]["predmaint-state"])  # the guard's state is on the volume


def test_a_gdrive_remote_gets_as_far_as_authentication_in_the_image(tmp_path, mlflow_image):
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore

    store = tmp_path / "store"
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(SimulationSpec(machines=2, steps=20, seed=1)), writer, threading.Event())
    values = {
        "mlflow": {"trackingUri": mlflow_image.uri},
        "snapshot": {"enabled": True},
        "dvc": {"remote": "gdrive://0AIac4JZqHhKmUk9PVA", "existingSecret": "predmaint-dvc"},
    }
    docs = render_chart(values)
    # A service-account file of the right shape whose key is no key: DVC must load its Google
    # Drive plugin and fail at authentication, before any request leaves the machine.
    account = {
        "type": "service_account",
        "project_id": "predmaint-test",
        "private_key_id": "0",
        "private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "client_email": "snapshot@predmaint-test.iam.gserviceaccount.com",
        "client_id": "0",
        "token_uri": "http://127.0.0.1:9/token",
    }
    require_image("pipeline")
    pod = Pod(
        docs,
        find(docs, "CronJob", component="snapshot"),
        claims={"predmaint-store": claim_folder(store)},
        secrets={"predmaint-dvc": {"service-account.json": json.dumps(account)}},
    )
    done = pod.run()
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "dvc-gdrive" not in output and "is supported, but requires" not in output, output
    assert "authenticat" in output.lower() or "credentials" in output.lower(), output
