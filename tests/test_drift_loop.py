"""The guarded retraining loop end to end, on real parts: store, DVC, kfp.local, MLflow registry.

A fleet streams into the store; the pipeline makes champion v1. Checks on the stream without
drift start nothing. Then the fleet's cooling degrades: the next check starts exactly one
retraining run through kfp.local on the newest snapshot, which registers a challenger and
promotes it if it wins the gate; repeated checks of the same stream start no further run. The
KFP trigger submits exactly one run to a recording stand-in of the KFP API.
"""

from __future__ import annotations

import threading

import pytest
from kfp_standin import KfpStandIn

from predmaint.registry import CHAMPION, alias_version
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec

pytestmark = pytest.mark.slow


def _stream(store, steps: int, scenario: Scenario = Scenario.none, onset: int = 0) -> None:
    """The same fleet as the fixture's (seed 5), continued to `steps` steps; stored readings are skipped."""
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore

    spec = SimulationSpec(machines=20, steps=steps, seed=5, scenario=scenario, onset=onset)
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(spec), writer, threading.Event())


def _snapshot(tmp_path, store) -> str:
    from predmaint.retrain import latest_snapshot
    from predmaint.versioning import remote_config, snapshot

    snapshot(store, remote_config(str(tmp_path / "remote")))
    return latest_snapshot(store)


def _versions(settings) -> list[str]:
    from mlflow import MlflowClient

    from predmaint.registry import prepare_tracking

    uri = prepare_tracking(settings.mlflow.tracking_uri)
    found = MlflowClient(uri, uri).search_model_versions(f"name = '{settings.mlflow.model_name}'")
    return sorted(str(v.version) for v in found)


def _settings(store, monkeypatch, **env: str):
    from predmaint.config import load_settings

    monkeypatch.setenv("PREDMAINT_INGEST__STORE", str(store))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def test_drift_in_the_stream_starts_one_retraining_and_a_stream_without_it_none(
    local_pipeline, tmp_path, monkeypatch
):
    from predmaint.watch import run_check

    store = local_pipeline.store
    settings = _settings(store, monkeypatch)
    assert local_pipeline()["champion_version"] == "1"

    _stream(store, 700)  # 100 more steps of the same machines, nothing changed
    _snapshot(tmp_path, store)
    calm = [run_check(settings, trigger="local") for _ in range(2)]
    assert [c.retrain for c in calm] == [False, False], [c.reason for c in calm]
    assert _versions(settings) == ["1"]

    _stream(store, 800, Scenario.cooling_degradation, onset=700)
    version = _snapshot(tmp_path, store)  # the data version the retraining must use
    checks = [run_check(settings, trigger="local") for _ in range(3)]
    first = checks[0]
    assert first.drift and first.retrain, first.reason
    assert first.features["delta_t_k"]["drifted"]
    assert first.triggered_run
    assert [c.retrain for c in checks[1:]] == [False, False]
    assert all("not retraining" in c.reason for c in checks[1:]), [c.reason for c in checks]
    assert _versions(settings) == ["1", "2"]  # exactly one retraining run registered a challenger

    from mlflow import MlflowClient

    from predmaint.registry import prepare_tracking

    uri = prepare_tracking(settings.mlflow.tracking_uri)
    challenger = MlflowClient(uri, uri).get_model_version(settings.mlflow.model_name, "2")
    assert first.retraining["data_version"] == version  # the newest snapshot
    assert challenger.tags["data_version"].startswith(f"{version[:12]}:")  # <commit>:<dvc md5>
    champion = alias_version(settings.mlflow.tracking_uri, settings.mlflow.model_name, CHAMPION)
    assert champion == ("2" if first.retraining["promoted"] else "1"), first.retraining


def test_the_kfp_trigger_submits_one_run_with_the_newest_data_version(
    local_pipeline, tmp_path, monkeypatch, capsys
):
    from predmaint.cli import main
    from predmaint.watch import run_check

    store = local_pipeline.store
    assert local_pipeline()["champion_version"] == "1"
    _stream(store, 700, Scenario.cooling_degradation, onset=600)
    version = _snapshot(tmp_path, store)
    _settings(store, monkeypatch, PREDMAINT_DRIFT__KFP_HOST="http://127.0.0.1:9")  # nothing listens
    assert main(["drift", "check", "--trigger", "kfp", "--json"]) == 1
    assert "could not submit to KFP at http://127.0.0.1:9" in capsys.readouterr().err
    with KfpStandIn() as kfp:  # the failed submission was not recorded: the next check submits
        settings = _settings(store, monkeypatch, PREDMAINT_DRIFT__KFP_HOST=kfp.url)
        checks = [run_check(settings, trigger="kfp") for _ in range(2)]
    assert checks[0].retrain and checks[0].triggered_run == "run-1", checks[0].reason
    assert not checks[1].retrain
    [run] = kfp.recorded.runs
    parameters = run["runtime_config"]["parameters"]
    assert parameters["data_version"] == version and parameters["store"] == "/data/store"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "predmaint-training"
    assert _versions(settings) == ["1"]  # the run was submitted, not run here
