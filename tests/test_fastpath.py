"""The compiled request path gives the answers of the reference `predict_readings`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from predmaint import schema
from predmaint.fastpath import NotCompilable, compile_bundle
from predmaint.ingest.parse import parse_columns
from predmaint.model import Bundle, predict_readings
from predmaint.training import build_model, fit_mode_models
from serving.app import LoadedModel


@pytest.fixture(scope="module")
def frames(simulate_frame):
    return simulate_frame(machines=20, steps=400, seed=21), simulate_frame(machines=5, steps=300, seed=22)


@pytest.mark.parametrize(
    "family, params",
    [
        ("random_forest", {"n_estimators": 40, "min_samples_leaf": 1}),
        ("xgboost", {"n_estimators": 80, "max_depth": 5}),
    ],
)
def test_compiled_answers_equal_the_reference(frames, family, params):
    train, test = frames
    model = build_model(family, params).fit(train, train["machine_failure"])
    bundle = Bundle(model, 0.3, fit_mode_models(train, train) | {"twf": 0.01}, family)
    reference = predict_readings(bundle, test)
    compiled = compile_bundle(bundle).predict(parse_columns(_contract_json(test))[0])
    assert list(compiled) == list(reference.columns)
    np.testing.assert_allclose(compiled["failure_probability"], reference["failure_probability"], atol=1e-6)
    assert (compiled["failure"] == reference["failure"]).all() and reference["failure"].sum() > 0
    for mode in ("twf", "hdf", "pwf", "osf"):
        np.testing.assert_allclose(compiled[f"p_{mode}"], reference[f"p_{mode}"], atol=1e-6)
    expected = [json.loads(text) for text in reference["top_features"]]
    same = [
        [a["feature"] for a in x] == [b["feature"] for b in y]
        for x, y in zip(compiled["top_features"], expected, strict=True)
    ]
    assert np.mean(same) > 0.99
    values = [[item["contribution"] for item in reasons] for reasons in compiled["top_features"]]
    np.testing.assert_allclose(
        values, [[item["contribution"] for item in reasons] for reasons in expected], atol=1e-4
    )
    without = compile_bundle(bundle).predict(test.head(3), explain=False)
    assert "top_features" not in without and len(without["failure"]) == 3


def _contract_json(frame):
    """Readings of a simulated frame as the JSON bodies the service receives."""
    readings = frame[list(schema.REQUIRED_FIELDS)].assign(
        timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    return [json.dumps(row).encode() for row in readings.to_dict("records")]


def test_rolling_features_are_served_by_the_reference_path(frames):
    train, test = frames
    model = build_model("xgboost", {"n_estimators": 20}, rolling_window=5).fit(
        train, train["machine_failure"]
    )
    bundle = Bundle(model, 0.5, {}, "xgboost")
    with pytest.raises(NotCompilable, match="rolling"):
        compile_bundle(bundle)
    loaded = LoadedModel(bundle, "1", {})
    assert loaded.compiled is None
    assert len(loaded.predict(test.head(4), explain=True)) == 4
