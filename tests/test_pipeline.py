"""The KFP glue: compiled pipeline kept current, components through python_func, kfp.local end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

from components.evaluate.component import evaluate
from components.live_test.component import live_test
from components.preprocess.component import preprocess
from components.promote.component import promote
from components.pull_data.component import pull_data
from components.register.component import register
from components.train.component import train
from components.tune.component import tune
from components.validate_data.component import validate_data
from predmaint.registry import CHAMPION, alias_version
from predmaint.retrain import PIPELINE_FILE, compile_pipeline, latest_snapshot

pytestmark = pytest.mark.integration


def test_compiled_pipeline_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == PIPELINE_FILE.read_text(), (
        "run `predmaint pipeline compile` and commit the YAML"
    )


def test_compiled_pipeline_shape():
    documents = list(yaml.safe_load_all(PIPELINE_FILE.read_text()))
    spec, platform = documents[0], documents[1]
    assert spec["pipelineInfo"]["name"] == "predmaint-training"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "pull-data",
        "validate-data",
        "preprocess",
        "tune",
        "train",
        "evaluate",
        "register",
        "live-test",
        "promote",
    }
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {"predmaint/pipeline:0.1.0"}  # one image, set once
    commands = [" ".join(e["container"]["command"]) for e in executors.values()]
    assert not any("pip install" in command for command in commands)
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(k["configMapAsEnv"][0]["configMapName"] == "predmaint-settings" for k in kubernetes.values())
    assert kubernetes["exec-pull-data"]["pvcMount"][0]["mountPath"] == "/data/store"


def test_compiling_imports_no_heavy_library():
    code = (
        "import sys; import pipelines.training.pipeline; "
        "heavy = ('pandas', 'xgboost', 'sklearn', 'mlflow', 'predmaint'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_each_component_through_python_func(tmp_path, local_pipeline):
    def artifact(kind, name):
        return kind(name=name, uri=str(tmp_path / "artifacts" / name))

    store = local_pipeline.store
    readings = artifact(Dataset, "readings")
    version = pull_data.python_func(store=str(store), data_version=latest_snapshot(store), readings=readings)
    assert version.endswith(".dir") and readings.metadata["files"] >= 1
    report = artifact(Artifact, "report")
    assert validate_data.python_func(readings=readings, report=report) == 12_000
    parts = artifact(Dataset, "parts")
    preprocess.python_func(readings=readings, parts=parts)
    assert parts.metadata["live"]["readings"] > 0
    tuning = artifact(Artifact, "tuning")
    assert tune.python_func(parts=parts, tuning=tuning) == "xgboost"
    model = artifact(Model, "model")
    train.python_func(parts=parts, tuning=tuning, model=model)
    assert 0 < model.metadata["threshold"] < 1
    metrics_json, metrics = artifact(Artifact, "metrics_json"), artifact(Metrics, "metrics")
    confusion, html = artifact(ClassificationMetrics, "confusion"), artifact(HTML, "report_html")
    f1 = evaluate.python_func(
        model=model, parts=parts, metrics_json=metrics_json, metrics=metrics, confusion=confusion, report=html
    )
    assert metrics.metadata["f1"] == pytest.approx(f1) and "confusionMatrix" in confusion.metadata
    assert Path(html.path).read_text().startswith("<!doctype html>")
    registered = register.python_func(
        model=model,
        tuning=tuning,
        metrics_json=metrics_json,
        data_version=version,
        pipeline_run_id="test-run",
    )
    assert registered == "1"
    comparison = artifact(Artifact, "comparison")
    live_test.python_func(version=registered, parts=parts, comparison=comparison)
    decision = json.loads(promote.python_func(comparison=comparison))
    assert decision["promoted"] and decision["champion_version"] == "1"


@pytest.mark.slow
def test_whole_pipeline_with_kfp_local_promotes_once(local_pipeline):
    settings = local_pipeline.settings.mlflow
    first = local_pipeline()
    assert first == {
        "promoted": True,
        "reason": "no champion yet: the first model becomes champion",
        "champion_version": "1",
    }
    from mlflow import MlflowClient

    from predmaint.registry import prepare_tracking

    uri = prepare_tracking(settings.tracking_uri)
    tags = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version(settings.model_name, "1").tags
    assert tags["data_version"].endswith(".dir") and tags["pipeline_run_id"]  # lineage on the version
    second = local_pipeline()  # the same data again: an equal challenger does not replace the champion
    assert not second["promoted"] and "does not beat" in second["reason"]
    assert alias_version(settings.tracking_uri, settings.model_name, CHAMPION) == "1"
    assert alias_version(settings.tracking_uri, settings.model_name, "challenger") == "2"


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["pipeline", "run"], "only --local runs here", 2),
        (["pipeline", "submit", "--host", "http://127.0.0.1:9"], "--data-version is required", 2),
        (
            ["pipeline", "submit", "--host", "http://127.0.0.1:9", "--data-version", "abc"],
            "could not submit to KFP",
            1,
        ),
        (["pipeline", "run", "--local", "--store", "/nonexistent/store"], "has no snapshot yet", 1),
        (
            ["step", "live-test", "--parts", "p", "--out", "o"],
            "give exactly one of --version and --registered",
            2,
        ),
        (
            ["step", "live-test", "--parts", "p", "--out", "o", "--registered", "/nonexistent.json"],
            "no version",
            2,
        ),
        (
            ["step", "validate-data", "--readings", "/nonexistent", "--report", "r.json"],
            "no such readings",
            1,
        ),
    ],
)
def test_pipeline_cli_errors(args, message, code):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "predmaint"), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
