"""The service's contract with its clients: OpenAPI fuzzing, Prometheus metrics, the prediction log."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from predmaint import predlog, schema
from predmaint.config import load_settings
from serving.app import LoadedModel, create_app, create_app_from_settings

GOOD = schema.EXAMPLE_READING


@pytest.fixture
def app(served_bundle):
    return create_app({"BUNDLE": served_bundle, "MODEL_VERSION": "7"})


# The app exists at import so schemathesis can read its /openapi.json; `fuzz_model` loads the model.
FUZZ_APP = create_app({"MAX_BATCH": 50})
# 413 answers an oversize batch (a schema violation: maxItems); the default list lacks it.
FUZZ_CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "413", "415", "422"]}}}
)
FUZZ_SCHEMA = schemathesis.openapi.from_wsgi("/openapi.json", FUZZ_APP, config=FUZZ_CONFIG)


@pytest.fixture
def fuzz_model(served_bundle):
    FUZZ_APP.extensions["predmaint.models"].swap(LoadedModel(served_bundle, "1", {}))


@pytest.mark.slow
@FUZZ_SCHEMA.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_from_the_openapi_description_finds_no_5xx_and_no_contract_breach(case, fuzz_model):
    assert FUZZ_APP.extensions["predmaint.models"].current is not None
    case.call_and_validate()  # all checks: no 5xx, documented statuses and bodies, bad input rejected


def test_openapi_describes_the_contract_and_the_configured_limits(app):
    document = app.test_client().get("/openapi.json").get_json()
    reading = document["components"]["schemas"]["Reading"]
    assert set(reading["properties"]) == set(schema.FIELD_NAMES)
    assert reading["required"] == list(schema.REQUIRED_FIELDS) and reading["additionalProperties"] is False
    assert reading["properties"]["torque_nm"]["maximum"] == schema.FIELD_BY_NAME["torque_nm"].maximum
    batch = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["oneOf"][1]["maxItems"] == 1000
    assert {"400", "413", "415", "422", "503"} <= set(document["paths"]["/predict"]["post"]["responses"])


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_metrics_count_requests_errors_latency_and_decisions(app):
    client = app.test_client()
    before = client.get("/metrics").get_data(as_text=True)
    risky = GOOD | {"seq": 1, "tool_wear_min": 230, "torque_nm": 65.0}
    client.post("/predict", json=[GOOD, risky])
    client.post("/predict", json=GOOD | {"torque_nm": -1})
    client.post("/predict", data="x", content_type="text/plain")
    after = client.get("/metrics").get_data(as_text=True)

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("predmaint_requests_total", endpoint="/predict", method="POST", status="200") == 1
    assert delta("predmaint_request_errors_total", status="422") == 1
    assert delta("predmaint_request_errors_total", status="415") == 1
    assert delta("predmaint_request_duration_seconds_count", endpoint="/predict") == 3
    decided = delta("predmaint_predictions_total", decision="failure") + delta(
        "predmaint_predictions_total", decision="no_failure"
    )
    assert decided == 2
    assert _sample(after, "predmaint_model_version") == 7


def test_prediction_log_keeps_inputs_outputs_and_version(tmp_path, served_bundle, monkeypatch):
    monkeypatch.setenv("PREDMAINT_SERVING__PREDICTION_LOG", str(tmp_path / "log"))
    app = create_app_from_settings(load_settings().serving)
    app.extensions["predmaint.models"].swap(LoadedModel(served_bundle, "5", {}))
    client = app.test_client()
    batch = [GOOD | {"machine_id": f"M{i}", "seq": i} for i in range(3)] + [
        GOOD | {"seq": 9, "machine_failure": 1}
    ]
    answers = client.post("/predict", json=batch).get_json()["predictions"]
    client.post("/predict", json=GOOD | {"torque_nm": "bad"})  # rejected: not logged
    assert app.config["PREDICTION_LOG"].flush() == 4
    logged = predlog.read_predictions(tmp_path / "log")
    assert len(logged) == 4 and set(logged["model_version"]) == {"5"}
    assert logged["failure_probability"].tolist() == [a["failure_probability"] for a in answers]
    assert logged["torque_nm"].tolist() == [42.8] * 4
    # A label sent to /predict is scored around, never logged: the drift check must not trust it.
    assert not set(schema.LABEL_FIELDS) & set(logged.columns)
    assert str(logged["timestamp"].dt.tz) == "UTC"
    assert json.loads(logged["top_features"].iloc[0]) == answers[0]["top_features"]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_prediction_log_formats_and_a_torn_line(tmp_path, fmt):
    log = predlog.PredictionLog(tmp_path, fmt)
    rows = [
        {
            "logged_at": f"2026-01-0{d}T00:00:00.000000Z",
            "machine_id": "M1",
            "seq": d,
            "failure_probability": 0.1 * d,
            "timestamp": "2026-01-01T00:00:00Z",
        }
        for d in (1, 2)
    ]
    log.append(rows)
    assert log.flush() == 2
    assert sorted(p.parent.name for p in tmp_path.rglob(f"*.{fmt}")) == ["date=2026-01-01", "date=2026-01-02"]
    if fmt == "jsonl":
        with open(next(tmp_path.rglob("*.jsonl")), "ab") as handle:
            handle.write(b'{"logged_at": "2026-01-01T00:00')  # a crash mid-write
    frame = predlog.read_predictions(tmp_path)
    assert frame["seq"].tolist() == [1, 2]
    assert predlog.latest_per_machine(frame)["seq"].tolist() == [2]


def test_prediction_log_write_failure_keeps_records_for_the_next_flush(tmp_path):
    blocker = tmp_path / "log"
    blocker.write_text("a file where the log directory should be")
    seen = []
    log = predlog.PredictionLog(blocker, on_flush=lambda *counts: seen.append(counts))
    log.append([{"logged_at": "2026-01-01T00:00:00Z", "machine_id": "M1", "seq": 1}])
    assert log.flush() == 0 and log.failed == 1 and seen == [(0, 1, 0)]
    blocker.unlink()
    assert log.flush() == 1 and seen[-1] == (1, 0, 0)
    assert len(predlog.read_predictions(blocker)) == 1


def test_the_flush_thread_survives_any_error_and_the_buffer_stays_bounded(tmp_path, monkeypatch):
    import time

    seen = []
    log = predlog.PredictionLog(
        tmp_path / "log", flush_seconds=0.05, max_buffered=3, on_flush=lambda *c: seen.append(c)
    )
    calls = []

    def broken(batch):
        calls.append(len(batch))
        raise TypeError("a record no writer takes")  # not an OSError

    def record(i: int) -> dict:
        return {"logged_at": "2026-01-01T00:00:00.000000Z", "machine_id": "M1", "seq": i}

    monkeypatch.setattr(log, "_write", broken)
    log.append([record(i) for i in range(5)])  # 2 over the bound: dropped at once
    assert log.dropped == 2
    deadline = time.monotonic() + 10
    while not calls:  # the thread flushed and the writer raised
        assert time.monotonic() < deadline, "the flush thread never flushed"
        time.sleep(0.02)
    assert log.dropped == 5  # a batch no writer takes is dropped, not retried forever
    monkeypatch.undo()
    log.append([record(i) for i in range(5, 8)])
    deadline = time.monotonic() + 10
    while log.written < 3:
        assert time.monotonic() < deadline, "the flush thread died"
        time.sleep(0.02)
    log.close()
    assert sum(c[2] for c in seen) == 5  # every drop reaches /metrics through on_flush
    assert predlog.read_predictions(tmp_path / "log")["seq"].tolist() == [5, 6, 7]


def test_prediction_log_format_is_checked():
    with pytest.raises(ValueError, match="jsonl, parquet"):
        predlog.PredictionLog("x", "csv")
    from predmaint.config import ConfigError

    with pytest.raises(ConfigError, match="prediction_log_format"):
        load_settings(serving={"prediction_log_format": "csv"})


@pytest.mark.reliability(
    "/predict", "forged labels (machine_failure: 1) in requests", "ignored: labels come only from the store"
)
def test_the_drift_window_takes_labels_from_the_store_never_from_predict(
    tmp_path, served_bundle, monkeypatch
):
    import threading

    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore, read_store
    from predmaint.simulator import SimulationSpec
    from predmaint.watch import latest_window

    store = tmp_path / "store"
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(SimulationSpec(machines=2, steps=30, seed=4)), writer, threading.Event())
    stored = read_store(store)
    monkeypatch.setenv("PREDMAINT_SERVING__PREDICTION_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("PREDMAINT_INGEST__STORE", str(store))
    settings = load_settings()
    app = create_app_from_settings(settings.serving)
    app.extensions["predmaint.models"].swap(LoadedModel(served_bundle, "5", {}))
    readings = json.loads(stored.head(40).to_json(orient="records", date_format="iso"))
    forged = [reading | {"machine_failure": 1} for reading in readings]  # an attacker's labels
    forged.append(GOOD | {"machine_id": "NOT-STORED", "machine_failure": 1})
    assert app.test_client().post("/predict", json=forged).status_code == 200
    app.config["PREDICTION_LOG"].flush()
    window = latest_window(settings)
    assert len(window) == 41
    by_key = stored.set_index(["machine_id", "seq"])["machine_failure"]
    known = window[window["machine_id"] != "NOT-STORED"]
    keys = zip(known["machine_id"], known["seq"], strict=True)
    assert known["machine_failure"].tolist() == [by_key[key] for key in keys]
    assert known["machine_failure"].sum() < len(known)  # not the forged all-ones
    assert window.loc[window["machine_id"] == "NOT-STORED", "machine_failure"].isna().all()


def test_reading_the_newest_records_reads_only_the_newest_partitions(tmp_path, caplog):
    log = predlog.PredictionLog(tmp_path / "log")
    log.append(
        [
            {"logged_at": f"2026-01-{day:02d}T00:00:0{i}.000000Z", "machine_id": "M1", "seq": day * 10 + i}
            for day in (1, 2, 3)
            for i in range(4)
        ]
    )
    assert log.flush() == 12
    (tmp_path / "log" / "date=2026-01-01" / "predictions-old.jsonl").write_bytes(b"\xff" * 10)  # unread
    newest = predlog.read_predictions(tmp_path / "log", newest=6)
    assert newest["seq"].tolist() == [22, 23, 30, 31, 32, 33]
    assert "unreadable" not in caplog.text  # the oldest partition was never opened
    assert len(predlog.read_predictions(tmp_path / "log")) == 12
    assert "skipped 1 unreadable line" in caplog.text


def test_prediction_log_retention_removes_only_old_date_folders(tmp_path):
    from datetime import UTC, datetime

    log = predlog.PredictionLog(tmp_path / "log")
    log.append(
        [
            {"logged_at": f"{day}T00:00:00.000000Z", "machine_id": "M1", "seq": i}
            for i, day in enumerate(["2026-01-01", "2026-02-27", "2026-03-01"])
        ]
    )
    log.flush()
    (tmp_path / "log" / "date=notes").mkdir()  # not a date folder: never touched
    assert log.prune(datetime(2027, 1, 1, tzinfo=UTC)) == []  # no retention set: nothing goes
    log.retention_days = 30
    removed = log.prune(datetime(2026, 3, 30, tzinfo=UTC))
    assert removed == ["date=2026-01-01", "date=2026-02-27"]
    assert sorted(p.name for p in (tmp_path / "log").iterdir()) == ["date=2026-03-01", "date=notes"]
    assert (
        predlog.PredictionLog(tmp_path / "log").prune(datetime(2027, 1, 1, tzinfo=UTC)) == []
    )  # no retention


def test_a_flush_prunes_past_retention(tmp_path):
    log = predlog.PredictionLog(tmp_path / "log", retention_days=1)
    log.append([{"logged_at": "2020-01-01T00:00:00.000000Z", "machine_id": "M1", "seq": 1}])
    log.append([{"logged_at": predlog.now_iso(), "machine_id": "M1", "seq": 2}])
    assert log.flush() == 2
    assert predlog.read_predictions(tmp_path / "log")["seq"].tolist() == [2]


TOKEN = "predict-token-0123456789abcdef"


@pytest.fixture
def guarded(served_bundle):
    return create_app({"BUNDLE": served_bundle, "MODEL_VERSION": "7", "TOKEN": TOKEN}).test_client()


@pytest.mark.reliability("/predict", "no bearer token, or a wrong one (serving.token_file)", "401")
@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token-0123456789",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
def test_with_a_token_predict_refuses_a_missing_or_wrong_one(guarded, header):
    headers = {"Authorization": header} if header is not None else {}
    answer = guarded.post("/predict", json=GOOD, headers=headers)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in answer.get_data(as_text=True)


def test_with_a_token_predict_answers_the_right_one_and_probes_stay_open(guarded):
    answer = guarded.post("/predict", json=GOOD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (
        answer.status_code == 200 and answer.get_json()["predictions"][0]["machine_id"] == GOOD["machine_id"]
    )
    assert guarded.get("/health").status_code == 200 and guarded.get("/ready").status_code == 200
    document = guarded.get("/openapi.json").get_json()
    assert document["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    assert "401" in document["paths"]["/predict"]["post"]["responses"]


def test_with_a_token_the_page_form_scores_only_with_it(guarded):
    page = guarded.get("/").get_data(as_text=True)
    assert 'name="token"' in page and 'type="password"' in page
    form = {name: str(value) for name, value in GOOD.items()}
    refused = guarded.post("/", data=form)
    assert refused.status_code == 401 and "access token is missing or wrong" in refused.get_data(as_text=True)
    assert guarded.post("/", data=form | {"token": "wrong"}).status_code == 401
    scored = guarded.post("/", data=form | {"token": TOKEN})
    assert scored.status_code == 200 and 'id="verdict"' in scored.get_data(as_text=True)


def test_without_a_token_the_service_stays_open(app):
    assert app.test_client().post("/predict", json=GOOD).status_code == 200
    assert 'name="token"' not in app.test_client().get("/").get_data(as_text=True)


def test_the_token_file_setting_guards_predict(tmp_path, monkeypatch, served_bundle):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv(
        "PREDMAINT_SERVING__TOKEN_FILE", str(path)
    )  # as `predmaint serve --token-file` sets it
    client = create_app_from_settings(load_settings(serving={"prediction_log": None}).serving)
    client.extensions["predmaint.models"].swap(LoadedModel(served_bundle, "1", {}))
    assert client.test_client().post("/predict", json=GOOD).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.test_client().post("/predict", json=GOOD, headers=headers).status_code == 200
