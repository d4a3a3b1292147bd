"""The Flask service: explained predictions, readiness, and a 4xx with a reason for every bad input."""

from __future__ import annotations

import json

import pytest

from predmaint import schema
from serving.app import LoadedModel, create_app

GOOD = schema.EXAMPLE_READING


@pytest.fixture
def bundle(served_bundle):
    return served_bundle


@pytest.fixture
def app(bundle):
    return create_app(
        {"BUNDLE": bundle, "MODEL_VERSION": "3", "MODEL_INFO": {"name": "predictive-maintenance"}}
    )


@pytest.fixture
def client(app):
    return app.test_client()


def test_one_reading_gets_an_explained_prediction(client):
    answer = client.post("/predict", json=GOOD)
    assert answer.status_code == 200
    [prediction] = answer.get_json()["predictions"]
    assert prediction["machine_id"] == "M0001" and prediction["model_version"] == "3"
    assert 0 <= prediction["failure_probability"] <= 1 and isinstance(prediction["failure"], bool)
    assert set(prediction["failure_modes"]) == {"twf", "hdf", "pwf", "osf"}
    assert len(prediction["top_features"]) == 3 and {"feature", "contribution"} == set(
        prediction["top_features"][0]
    )


def test_a_batch_and_the_physics_it_answers_to(client):
    overstrained = GOOD | {"seq": 8, "tool_wear_min": 230, "torque_nm": 60.0}  # 13,800 minNm > 11,000 for L
    answer = client.post("/predict", json=[GOOD, overstrained])
    healthy, strained = answer.get_json()["predictions"]
    assert strained["failure_probability"] > healthy["failure_probability"]
    assert strained["failure_modes"]["osf"] > healthy["failure_modes"]["osf"]


def test_health_ready_and_model(client, bundle):
    assert client.get("/health").get_json() == {"status": "ok"}
    assert client.get("/ready").get_json() == {"ready": True, "model_version": "3"}
    info = client.get("/model").get_json()
    assert info["version"] == "3" and info["family"] == "xgboost" and info["name"] == "predictive-maintenance"


def test_not_ready_until_a_model_is_loaded_then_swapped_in(bundle):
    app = create_app()
    client = app.test_client()
    assert client.get("/ready").status_code == 503
    assert client.post("/predict", json=GOOD).status_code == 503
    app.extensions["predmaint.models"].swap(LoadedModel(bundle, "4", {}))
    assert client.get("/ready").status_code == 200
    assert client.post("/predict", json=GOOD).get_json()["predictions"][0]["model_version"] == "4"


@pytest.mark.parametrize(
    "body, status, message, field",
    [
        (GOOD | {"torque_nm": -3}, 422, "torque_nm: -3 Nm is outside the physical range", "torque_nm"),
        (GOOD | {"torque_nm": "40"}, 422, "torque_nm: expected a number", "torque_nm"),
        ({k: v for k, v in GOOD.items() if k != "seq"}, 422, "missing field(s): seq", "seq"),
        (GOOD | {"colour": "red"}, 422, "unknown field(s): colour", "colour"),
        (GOOD | {"timestamp": "yesterday"}, 422, "is not ISO-8601", "timestamp"),
        (GOOD | {"product_type": "X"}, 422, "product_type", "product_type"),
        ([GOOD, GOOD | {"seq": -1}], 422, "reading 1: seq", "seq"),
        ([], 400, "the list of readings is empty", None),
        ([GOOD] * 1001, 413, "1001 readings in one request; the limit is 1000", None),
        ("just a string", 422, "expected a JSON object", None),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(client, body, status, message, field):
    answer = client.post("/predict", json=body)
    assert answer.status_code == status
    payload = answer.get_json()
    assert message in payload["error"]
    assert payload.get("field") == field


def test_bodies_that_are_not_json(client):
    assert client.post("/predict", data="x", content_type="text/plain").status_code == 415
    empty = client.post("/predict", data="", content_type="application/json")
    assert empty.status_code == 400 and "empty or not valid JSON" in empty.get_json()["error"]
    nan = client.post(
        "/predict", data=json.dumps(GOOD | {"torque_nm": float("nan")}), content_type="application/json"
    )
    assert nan.status_code == 422 and "not a finite number" in nan.get_json()["error"]
    huge = client.post("/predict", data=b"[" + b" " * (3 << 20) + b"]", content_type="application/json")
    assert huge.status_code == 413
    assert client.get("/predict").status_code == 405
    assert client.get("/nowhere").get_json()["error"]
