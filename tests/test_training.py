"""Features, targets, leakage-free splits, tuning, thresholds, metrics and explanations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predmaint import schema
from predmaint.datasets import write_readings
from predmaint.features import DataError, PhysicsFeatures, split, target
from predmaint.training import (
    TrainingConfig,
    build_model,
    check_labels,
    choose_threshold,
    contributions,
    cross_validate,
    fit,
    metrics,
    top_contributions,
)

PREDMAINT = str(Path(sys.executable).parent / "predmaint")


@pytest.fixture(scope="module")
def readings(simulate_frame):
    return simulate_frame(machines=20, steps=300, seed=7)


def test_physics_features(readings):
    out = PhysicsFeatures().fit(readings).transform(readings)
    assert list(out.columns) == list(PhysicsFeatures().fit(readings).get_feature_names_out())
    row, raw = out.iloc[0], readings.iloc[0]
    assert row["delta_t_k"] == pytest.approx(raw["process_temperature_k"] - raw["air_temperature_k"])
    assert row["power_w"] == pytest.approx(raw["torque_nm"] * raw["rotational_speed_rpm"] * 2 * np.pi / 60)
    limit = schema.OSF_STRAIN_LIMIT_MIN_NM[raw["product_type"]]
    assert row["strain_ratio"] == pytest.approx(raw["tool_wear_min"] * raw["torque_nm"] / limit)
    assert row[f"type_{raw['product_type']}"] == 1 and out.filter(like="type_").iloc[0].sum() == 1
    assert not set(schema.LABEL_FIELDS) & set(out.columns)  # labels are never features


def test_rolling_features_look_only_at_the_past(readings):
    transformer = PhysicsFeatures(rolling_window=5).fit(readings)
    before = transformer.transform(readings)
    changed = readings.copy()
    last = changed.groupby("machine_id")["seq"].idxmax()
    changed.loc[last, "torque_nm"] = 150.0  # alter each machine's latest reading
    after = transformer.transform(changed)
    earlier = ~readings.index.isin(last)
    pd.testing.assert_frame_equal(before[earlier], after[earlier])
    assert (after.loc[last, "torque_nm_rolling"] > before.loc[last, "torque_nm_rolling"]).all()


def test_features_need_the_sensor_fields(readings):
    with pytest.raises(DataError, match="lack field"):
        PhysicsFeatures().fit_transform(readings.drop(columns=["torque_nm"]))


def test_targets_now_and_within_a_horizon():
    frame = pd.DataFrame({"machine_id": ["a"] * 6, "seq": range(6), "machine_failure": [0, 0, 0, 1, 0, 0]})
    assert target(frame, 0).tolist() == [0, 0, 0, 1, 0, 0]
    ahead = target(frame, 2)
    assert ahead.iloc[:4].tolist() == [0, 1, 1, 1] and ahead.iloc[4:].isna().all()
    with pytest.raises(DataError, match="no machine_failure labels"):
        target(frame.drop(columns=["machine_failure"]))
    with pytest.raises(DataError, match="horizon"):
        target(frame, -1)


def test_time_split_keeps_the_future_out_of_training(readings):
    y = target(readings)
    parts = split(readings, y, test_fraction=0.2, validation_fraction=0.2)
    stamps = readings["timestamp"]
    assert stamps.iloc[parts.train].max() < stamps.iloc[parts.validation].min()
    assert stamps.iloc[parts.validation].max() < stamps.iloc[parts.test].min()
    assert len(parts.test) == pytest.approx(0.2 * len(readings), rel=0.05)


def test_horizon_split_drops_rows_whose_label_sees_the_next_period(readings):
    y = target(readings, 10)
    parts = split(readings, y, horizon=10)
    train = readings.iloc[parts.train]
    first_val_seq = readings.iloc[parts.validation].groupby("machine_id")["seq"].min()
    reach = train["seq"] + 10
    assert (reach.to_numpy() < first_val_seq.loc[train["machine_id"]].to_numpy()).all()


def test_stratified_split_keeps_the_failure_share(fleet):
    y = target(fleet)
    parts = split(fleet, y, method="stratified")
    shares = [y.iloc[p].mean() for p in (parts.train, parts.validation, parts.test)]
    assert max(shares) - min(shares) < 0.002


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 0}, "test_fraction"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"test_fraction": 0.6, "validation_fraction": 0.5}, "leave rows for training"),
        ({"method": "random"}, "split method"),
    ],
)
def test_bad_split_settings(readings, kwargs, message):
    with pytest.raises(DataError, match=message):
        split(readings, target(readings), **kwargs)


def test_one_class_and_empty_data_are_refused_clearly():
    with pytest.raises(DataError, match="only non-failures"):
        check_labels(pd.Series([0.0, 0.0]), "training")
    with pytest.raises(DataError, match="is empty"):
        check_labels(pd.Series([], dtype=float), "test")
    with pytest.raises(DataError, match="dataset is empty"):
        fit(pd.DataFrame(columns=list(schema.FIELD_NAMES)), TrainingConfig(trials=1))


def test_threshold_maximises_f1():
    y = np.array([0, 0, 0, 1, 1, 0, 1])
    proba = np.array([0.1, 0.2, 0.35, 0.4, 0.8, 0.45, 0.9])
    threshold = choose_threshold(y, proba)
    assert threshold == pytest.approx(0.4)
    assert metrics(y, proba, threshold)["f1"] == pytest.approx(2 * 0.75 * 1 / 1.75)


def test_metrics_of_the_failure_class():
    result = metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.3, 0.6]), 0.5)
    assert (result["tp"], result["fp"], result["fn"], result["tn"]) == (1, 1, 1, 1)
    assert result["precision"] == result["recall"] == result["f1"] == 0.5


@pytest.mark.slow
def test_fit_tunes_both_families_and_measures_on_the_test_part(fleet):
    data = fleet[fleet["machine_id"].isin([f"M{i:04d}" for i in range(1, 31)])]  # 30,000 readings
    trained = fit(data, TrainingConfig(trials=2, families=("random_forest", "xgboost"), seed=1))
    assert {t["family"] for t in trained.tuning.trials} == {"random_forest", "xgboost"}
    assert 0 < trained.threshold < 1
    assert trained.test["f1"] > 0.6 and trained.test["pr_auc"] > 0.6  # physics is learnable
    probabilities = trained.model.predict_proba(data.iloc[:5])[:, 1]  # the model takes contract readings
    assert ((0 <= probabilities) & (probabilities <= 1)).all()
    hdf = trained.mode_models["hdf"]
    on_rule = data[(data["hdf"] == 1)].iloc[:20]
    off_rule = data[(data["machine_failure"] == 0)].iloc[:20]
    assert hdf.predict_proba(on_rule)[:, 1].mean() > 0.5 > hdf.predict_proba(off_rule)[:, 1].mean()


@pytest.mark.parametrize("family", ["random_forest", "xgboost"])
def test_contributions_add_up_to_the_prediction(readings, family):
    y = readings["machine_failure"]
    params = {"n_estimators": 20, "max_depth": 4} | ({"learning_rate": 0.3} if family == "xgboost" else {})
    model = build_model(family, params).fit(readings, y)
    sample = readings.iloc[:30]
    contrib = contributions(model, sample)
    assert list(contrib.columns) == list(model.named_steps["features"].get_feature_names_out())
    if family == "xgboost":
        margin = model.named_steps["model"].predict(model[:-1].transform(sample), output_margin=True)
        bias = margin - contrib.sum(axis=1).to_numpy()
        assert np.allclose(bias, bias[0], atol=1e-4)  # contributions + one bias = log-odds
    else:
        proba = model.predict_proba(sample)[:, 1]
        bias = proba - contrib.sum(axis=1).to_numpy()
        assert np.allclose(bias, bias[0], atol=1e-6)  # contributions + the training share = probability
    top = top_contributions(contrib, k=2)
    assert len(top) == 30 and all(len(t) == 2 for t in top)
    assert top[0][0]["contribution"] >= top[0][1]["contribution"]


@pytest.mark.slow
def test_cross_validation_reports_every_fold(fleet):
    data = fleet[fleet["machine_id"].isin([f"M{i:04d}" for i in range(1, 31)])]
    result = cross_validate(data, TrainingConfig(trials=1, families=("xgboost",)), folds=2)
    assert len(result["folds"]) == 2
    assert result["f1"] == pytest.approx(np.mean([f["f1"] for f in result["folds"]]))
    with pytest.raises(DataError, match="at least 2 folds"):
        cross_validate(data, TrainingConfig(trials=1), folds=1)


@pytest.mark.slow
def test_evaluate_cli_prints_json(tmp_path, fleet):
    data = tmp_path / "fleet.parquet"
    write_readings([fleet[fleet["machine_id"].isin([f"M{i:04d}" for i in range(1, 16)])]], data)
    env = {**os.environ, "PREDMAINT_TRAINING__FAMILIES": '["xgboost"]'}  # one quick family
    result = subprocess.run(
        [PREDMAINT, "evaluate", "--data", str(data), "--cv", "2", "--trials", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"f1", "recall", "precision", "pr_auc", "roc_auc", "folds"} <= set(report)
    held_out = subprocess.run(
        [
            PREDMAINT,
            "evaluate",
            "--data",
            str(data),
            "--split",
            "time",
            "--test-fraction",
            "0.3",
            "--trials",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert held_out.returncode == 0, held_out.stderr
    assert json.loads(held_out.stdout)["method"] == "time split, test fraction 0.3"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cv", "1"], "Invalid value for '--cv'"),
        (["--split", "random"], "--split must be time or stratified"),
        (["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
        (["--cv", "3", "--split", "time"], "--cv evaluates by folds"),
    ],
)
def test_evaluate_bad_options(tmp_path, args, message):
    result = subprocess.run(
        [PREDMAINT, "evaluate", "--data", str(tmp_path / "x.jsonl"), *args], capture_output=True, text=True
    )
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_evaluate_refuses_unusable_data(tmp_path, simulate_frame):
    frame = simulate_frame(machines=2, steps=20, seed=0)
    frame["machine_failure"] = 0
    path = tmp_path / "healthy.parquet"
    write_readings([frame], path)
    result = subprocess.run(
        [PREDMAINT, "evaluate", "--data", str(path), "--trials", "1"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "only non-failures" in result.stderr
    missing = subprocess.run(
        [PREDMAINT, "evaluate", "--data", str(tmp_path / "absent.jsonl")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_rules_ceiling_counts_failures_the_readings_can_explain():
    from predmaint.training import rules_ceiling

    frame = pd.DataFrame({"hdf": [1, 0, 0, 0, 0], "pwf": [0, 1, 0, 0, 0], "osf": [0, 0, 0, 0, 0]})
    y = pd.Series([1, 1, 1, 1, 0])  # four failures, two explained by the rules (a TWF, an RNF…)
    assert rules_ceiling(frame, y) == {"rules_ceiling_recall": 0.5, "rules_ceiling_f1": pytest.approx(2 / 3)}
    assert rules_ceiling(frame.drop(columns=["osf"]), y) == {}


def test_the_real_time_split_ceiling(ai4i):
    from predmaint.training import rules_ceiling

    last = ai4i.iloc[8000:]
    ceiling = rules_ceiling(last, last["machine_failure"])
    assert ceiling["rules_ceiling_recall"] == pytest.approx(28 / 39)
    assert ceiling["rules_ceiling_f1"] == pytest.approx(0.8358, abs=1e-4)
