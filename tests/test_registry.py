"""MLflow registry on SQLite: logging, registration with lineage tags, aliases, the promotion gate."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from predmaint.registry import (
    CHALLENGER,
    CHAMPION,
    GateDecision,
    RegistryError,
    alias_version,
    load_champion,
    log_and_register,
    prepare_tracking,
    promotion_gate,
    set_alias,
)
from predmaint.training import TrainingConfig, fit

pytestmark = pytest.mark.integration


# --- the gate is plain Python --------------------------------------------------------------------
def test_first_model_always_becomes_champion():
    assert promotion_gate({"test": ({"f1": 0.1}, None), "live": ({"f1": 0.0}, None)}) == GateDecision(
        True, "no champion yet: the first model becomes champion"
    )


def test_an_equal_challenger_does_not_replace_the_champion():
    same = {"f1": 0.9}
    decision = promotion_gate({"test": (same, same), "live": (same, same)}, margin=0.005)
    assert not decision.promote and "does not beat" in decision.reason


def test_a_better_challenger_wins_only_if_better_everywhere():
    better = promotion_gate(
        {"test": ({"f1": 0.92}, {"f1": 0.90}), "live": ({"f1": 0.88}, {"f1": 0.85})}, margin=0.01
    )
    assert better.promote and "test f1 0.9200 vs 0.9000" in better.reason
    mixed = promotion_gate(
        {"test": ({"f1": 0.95}, {"f1": 0.90}), "live": ({"f1": 0.80}, {"f1": 0.85})}, margin=0.01
    )
    assert not mixed.promote and mixed.reason.startswith("live f1")


def test_a_worse_challenger_never_wins():
    decision = promotion_gate({"test": ({"recall": 0.5}, {"recall": 0.8})}, metric="recall", margin=0)
    assert not decision.promote


def test_undefined_metrics_do_not_promote():
    decision = promotion_gate({"live": ({"f1": math.nan}, {"f1": 0.5})})
    assert not decision.promote and "NaN" in decision.reason
    assert not promotion_gate({"test": ({"f1": 0.9}, None), "live": ({"f1": 0.9}, {"f1": 0.1})}).promote
    with pytest.raises(ValueError):
        promotion_gate({})


# --- MLflow on SQLite -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(simulate_frame):
    data = simulate_frame(machines=20, steps=500, seed=2)
    return fit(data, TrainingConfig(trials=1, families=("xgboost",))), data


@pytest.mark.slow
def test_log_register_alias_and_load(tmp_path, trained):
    model, data = trained
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    first = log_and_register(
        model,
        tracking_uri=uri,
        experiment="predmaint",
        model_name="pm",
        tags={"data_version": "abc123:def.dir", "pipeline_run_id": "run-1"},
        artifact_location=str(tmp_path / "artifacts"),
    )
    assert first.version == "1" and alias_version(uri, "pm", CHALLENGER) == "1"
    assert alias_version(uri, "pm", CHAMPION) is None and load_champion(uri, "pm") is None

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=prepare_tracking(uri), registry_uri=prepare_tracking(uri))
    version = client.get_model_version("pm", "1")
    assert version.tags["data_version"] == "abc123:def.dir" and version.tags["pipeline_run_id"] == "run-1"
    assert float(version.tags["test_f1"]) == pytest.approx(model.test["f1"], abs=1e-6)
    run = client.get_run(first.run_id)
    assert run.data.params["family"] == "xgboost" and "test_f1" in run.data.metrics
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'"
    )
    assert len(children) == 1 and "val_pr_auc" in children[0].data.metrics  # one child run per trial
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert artifacts == {"plots/confusion_matrix.png", "plots/feature_importance.png", "plots/pr_curve.png"}

    set_alias(uri, "pm", CHAMPION, "1")
    champion = load_champion(uri, "pm")
    readings = data.drop(columns=["machine_failure", "twf", "hdf", "pwf", "osf", "rnf"]).iloc[:4]
    readings = readings.assign(
        timestamp=readings["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )  # as JSON sends it
    out = champion.predict(readings)
    assert list(out.columns[:2]) == ["failure_probability", "failure"]
    assert {"p_twf", "p_hdf", "p_pwf", "p_osf", "top_features"} <= set(out.columns)
    reasons = json.loads(out["top_features"].iloc[0])
    assert len(reasons) == 3 and {"feature", "contribution"} == set(reasons[0])
    assert ((out["failure_probability"] >= 0) & (out["failure_probability"] <= 1)).all()
    assert isinstance(out, pd.DataFrame)


def test_unreachable_tracking_server_is_named():
    with pytest.raises(RegistryError, match="MLflow tracking server http://127.0.0.1:9 is unreachable"):
        prepare_tracking("http://127.0.0.1:9")


def test_sqlite_folder_is_created(tmp_path):
    uri = prepare_tracking(f"sqlite:///{tmp_path}/deep/er/mlflow.db")
    assert (tmp_path / "deep" / "er").is_dir() and uri.endswith("deep/er/mlflow.db")


@pytest.mark.reliability(
    "models",
    "a model bundle rewritten in the artifact store",
    "refused before unpickling; serving keeps its champion",
)
@pytest.mark.slow
def test_a_bundle_changed_after_registration_is_never_loaded_and_serving_keeps_its_model(tmp_path, trained):
    import threading

    import joblib
    from mlflow import MlflowClient

    from predmaint.registry import BUNDLE_DIGEST_TAG, ModelIntegrityError, file_sha256, load_version
    from serving import metrics
    from serving.app import LoadedModel, ModelHolder
    from serving.registry_loader import follow_alias

    model, _ = trained
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    store = tmp_path / "artifacts"
    options = {"tracking_uri": uri, "experiment": "predmaint", "model_name": "pm", "tags": {}}
    first = log_and_register(model, artifact_location=str(store), **options)
    second = log_and_register(model, artifact_location=str(store), **options)
    good = load_version(uri, "pm", first.version)  # the digest matches: loads
    client = MlflowClient(tracking_uri=prepare_tracking(uri), registry_uri=prepare_tracking(uri))
    registered = client.get_model_version("pm", second.version)
    model_id = registered.source.rstrip("/").split("/")[-1]  # models:/m-… in MLflow 3
    (bundle,) = [p for p in store.rglob("bundle.joblib") if model_id in p.parts]
    assert file_sha256(bundle) == registered.tags[BUNDLE_DIGEST_TAG]
    joblib.dump({"not": "the registered model"}, bundle)  # someone with write access to the store
    with pytest.raises(ModelIntegrityError, match="changed after registration"):
        load_version(uri, "pm", second.version)

    holder = ModelHolder()
    holder.swap(LoadedModel(good, first.version, {}))
    set_alias(uri, "pm", CHAMPION, second.version)
    stop = threading.Event()
    refused = metrics.MODELS_REFUSED._value.get()
    follow_alias(holder, tracking_uri=uri, model_name="pm", stop=stop, load_first=True)
    stop.set()
    assert holder.current.version == first.version  # the tampered champion was refused
    assert metrics.MODELS_REFUSED._value.get() == refused + 1  # and counted in /metrics

    client.delete_model_version_tag("pm", first.version, BUNDLE_DIGEST_TAG)
    with pytest.raises(ModelIntegrityError, match="no bundle_sha256 tag"):
        load_version(uri, "pm", first.version)
