"""The pipeline's stages as plain functions, end to end on a real DVC snapshot and SQLite MLflow."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from predmaint.config import MlflowSettings
from predmaint.features import DataError
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import SimulatorSource
from predmaint.ingest.store import ReadingStore
from predmaint.registry import CHAMPION, alias_version
from predmaint.simulator import SimulationSpec
from predmaint.steps import (
    evaluate,
    live_test,
    preprocess,
    promote,
    pull_data,
    register,
    train,
    tune,
    validate_data,
)
from predmaint.training import TrainingConfig
from predmaint.versioning import remote_config, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONFIG = TrainingConfig(trials=2, families=("xgboost",), seed=3)


@pytest.fixture(scope="module")
def data_version(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    with ReadingStore(root) as store:
        run_ingest(SimulatorSource(SimulationSpec(machines=20, steps=600, seed=5)), store, threading.Event())
    remote = remote_config(str(tmp_path_factory.mktemp("remote")))
    return root, snapshot(root, remote).commit


def run_stages(work, store, rev, mlflow, config=CONFIG, lineage=None):
    pulled = pull_data(str(store), rev, str(work / "readings"))
    report = validate_data(str(work / "readings"), str(work / "validation.json"))
    split = preprocess(str(work / "readings"), str(work / "parts"), config)
    tune(str(work / "parts"), str(work / "tuning.json"), config)
    train(str(work / "parts"), str(work / "tuning.json"), str(work / "model"), config)
    metrics = evaluate(
        str(work / "model"), str(work / "parts"), str(work / "metrics.json"), str(work / "report.html")
    )
    lineage = lineage or {
        "data_version": f"{pulled['commit'][:12]}:{pulled['dvc_md5']}",
        "pipeline_run_id": work.name,
    }
    registered = register(
        str(work / "model"), str(work / "tuning.json"), str(work / "metrics.json"), lineage, mlflow, config
    )
    live_test(registered["version"], str(work / "parts"), str(work / "live.json"), mlflow)
    decision = promote(str(work / "live.json"), mlflow)
    return {
        "report": report,
        "split": split,
        "metrics": metrics,
        "registered": registered,
        "decision": decision,
    }


def test_stages_register_and_promote_only_a_better_model(tmp_path, data_version):
    store, rev = data_version
    mlflow = MlflowSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    first = run_stages(tmp_path / "run1", store, rev, mlflow)
    assert first["report"]["readings"] == 12_000 and first["split"]["live"]["readings"] > 0
    report_html = (tmp_path / "run1" / "report.html").read_text()
    assert (
        "<h1>Evaluation on the test period</h1>" in report_html and "<polyline points='40.0," in report_html
    )
    assert first["decision"]["promoted"] and first["decision"]["reason"].startswith("no champion yet")
    assert alias_version(mlflow.tracking_uri, mlflow.model_name, CHAMPION) == first["registered"]["version"]

    again = run_stages(tmp_path / "run2", store, rev, mlflow)  # same data, same recipe: an equal model
    assert not again["decision"]["promoted"] and "does not beat" in again["decision"]["reason"]
    assert alias_version(mlflow.tracking_uri, mlflow.model_name, CHAMPION) == "1"

    worse = dataclasses.replace(CONFIG, rolling_window=0, families=("random_forest",), trials=1)
    work = tmp_path / "run3"
    pull_data(str(store), rev, str(work / "readings"))
    preprocess(str(work / "readings"), str(work / "parts"), worse)
    (work / "tuning.json").write_text(
        json.dumps(
            {  # a deliberately weak model: two shallow trees
                "family": "random_forest",
                "params": {"n_estimators": 2, "max_depth": 1},
                "score": 0.0,
                "trials": [],
            }
        )
    )
    train(str(work / "parts"), str(work / "tuning.json"), str(work / "model"), worse)
    evaluate(str(work / "model"), str(work / "parts"), str(work / "metrics.json"), str(work / "report.html"))
    weak = register(
        str(work / "model"), str(work / "tuning.json"), str(work / "metrics.json"), {}, mlflow, worse
    )
    live_test(weak["version"], str(work / "parts"), str(work / "live.json"), mlflow)
    assert not promote(str(work / "live.json"), mlflow)["promoted"]
    assert alias_version(mlflow.tracking_uri, mlflow.model_name, CHAMPION) == "1"


def test_missing_data_version_and_unusable_data_fail_clearly(tmp_path, data_version, simulate_frame):
    store, _ = data_version
    with pytest.raises(DataError, match="not a snapshot"):
        pull_data(str(store), "0000000", str(tmp_path / "x"))
    with pytest.raises(DataError, match="no data version given"):
        pull_data(str(store), "", str(tmp_path / "x"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="dataset is empty"):
        validate_data(str(empty), str(tmp_path / "r.json"))
    healthy = simulate_frame(machines=2, steps=50, seed=1)
    healthy["machine_failure"] = 0
    healthy.to_parquet(tmp_path / "healthy.parquet")
    with pytest.raises(DataError, match="every labelled reading is healthy"):
        validate_data(str(tmp_path / "healthy.parquet"), str(tmp_path / "r.json"))


def test_unreachable_tracking_server_fails_register_clearly(tmp_path, data_version):
    from predmaint.registry import RegistryError

    store, rev = data_version
    work = tmp_path / "run"
    pull_data(str(store), rev, str(work / "readings"))
    preprocess(str(work / "readings"), str(work / "parts"), CONFIG)
    tune(str(work / "parts"), str(work / "tuning.json"), CONFIG)
    train(str(work / "parts"), str(work / "tuning.json"), str(work / "model"), CONFIG)
    evaluate(str(work / "model"), str(work / "parts"), str(work / "metrics.json"), str(work / "report.html"))
    unreachable = MlflowSettings(tracking_uri="http://127.0.0.1:9")
    with pytest.raises(RegistryError, match="http://127.0.0.1:9 is unreachable"):
        register(
            str(work / "model"),
            str(work / "tuning.json"),
            str(work / "metrics.json"),
            {},
            unreachable,
            CONFIG,
        )
