"""The hostile corpus (tests/hostile.py) at the parser, file ingestion and /predict.

HTTP ingestion and MQTT run the same corpus in tests/test_ingest_http.py and tests/test_ingest_mqtt.py.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import hostile
import pytest

from predmaint import schema
from predmaint.ingest.parse import parse_items, split_payload
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import FileSource
from predmaint.ingest.store import ReadingStore, iter_dead_letters, read_store
from serving.app import create_app

NAMES = list(hostile.PAYLOADS)
# Timestamps before 2000 or far ahead are refused at ingestion only; /predict scores any time.
INGESTION_ONLY = ["timestamp in year 9999", "timestamp in 1970"]
PREDICT_NAMES = [name for name in NAMES if name not in INGESTION_ONLY]
GOOD_LINE = json.dumps(hostile.GOOD).encode()


def _reasons(payload: bytes) -> list[str]:
    """Dead-letter reasons of one payload the way ingestion sees it (split, then each item)."""
    items = split_payload(payload)
    if items is None:
        items = [payload]
    parsed = parse_items(items, bounds=schema.TimeBounds.from_clock())
    assert parsed.readings.empty, "a hostile payload slipped in as a reading"
    return [letter.reason for letter in parsed.dead_letters]


@pytest.mark.parametrize("name", NAMES, ids=[hostile.describe(n) for n in NAMES])
def test_every_hostile_payload_is_a_dead_letter_with_an_ascii_reason(name):
    reasons = _reasons(hostile.PAYLOADS[name])
    assert reasons, f"{name}: no dead letter"
    for reason in reasons:
        assert reason and reason != "valid"
        assert reason.isascii() and reason.isprintable(), reason
        assert len(reason) < 400


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("depth bomb (object)", "nested too deeply"),
        ("huge integer (5,000 digits)", "an integer of 5000 digits"),
        ("lone surrogate key", "unknown field(s): '\\ud800'"),
        ("NUL in machine_id", "other than printable ASCII"),
        ("zero-width space in machine_id", "other than printable ASCII"),
        ("surrounding whitespace in machine_id", "whitespace"),
        ("duplicate key", "duplicate key(s): seq"),
        ("duplicate key with whitespace", "duplicate key(s): seq"),
        ("timestamp in year 9999", "ahead of this machine's clock"),
        ("timestamp in 1970", "before 2000-01-01"),
    ],
)
def test_reasons_name_the_problem(name, expected):
    assert any(expected in reason for reason in _reasons(hostile.PAYLOADS[name])), _reasons(
        hostile.PAYLOADS[name]
    )


def test_a_key_like_text_inside_a_string_is_no_duplicate():
    tricky = json.dumps(hostile.GOOD | {"machine_id": 'M"1": x'}).encode()
    parsed = parse_items([tricky], bounds=schema.TimeBounds.from_clock())
    assert not parsed.dead_letters and parsed.readings["machine_id"].tolist() == ['M"1": x']


def test_the_clock_skew_is_configurable():
    ahead = json.dumps(hostile.future_reading(timedelta(hours=2))).encode()
    assert parse_items([ahead], bounds=schema.TimeBounds.from_clock()).dead_letters
    wide = schema.TimeBounds.from_clock(timedelta(hours=3))
    assert len(parse_items([ahead], bounds=wide).readings) == 1
    at_boundary = schema.TimeBounds(datetime(2026, 1, 1, tzinfo=UTC), timedelta(0))
    assert at_boundary.problem(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert at_boundary.problem(datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))


@pytest.mark.reliability(
    "files",
    "the hostile corpus (tests/hostile.py) in one file",
    "each a dead letter with a reason; the good reading stored",
)
def test_file_ingestion_dead_letters_the_whole_corpus_and_keeps_the_good_reading(
    tmp_path, record_reliability
):
    source = tmp_path / "hostile.jsonl"
    source.write_bytes(hostile.lines() + GOOD_LINE + b"\n")
    with ReadingStore(tmp_path / "store") as store:
        counts = run_ingest(FileSource(source), store, threading.Event())
    stored = read_store(tmp_path / "store")["machine_id"].tolist()
    record_reliability("readings_lost", 1 - stored.count(hostile.GOOD["machine_id"]))
    assert (counts.accepted, counts.rejected) == (1, len(hostile.PAYLOADS))
    assert stored == [hostile.GOOD["machine_id"]]
    letters = list(iter_dead_letters(tmp_path / "store"))
    assert len(letters) == len(hostile.PAYLOADS) and all(letter["reason"] for letter in letters)
    dead_files = (tmp_path / "store" / "dead_letter").glob("*.jsonl")
    assert all(path.read_bytes().isascii() for path in dead_files)


@pytest.mark.reliability(
    "files", "a conflicting duplicate (same key, other values)", "dead letter; the stored reading kept"
)
def test_file_ingestion_dead_letters_a_conflicting_duplicate(tmp_path, record_reliability):
    first, second = hostile.conflicting_pair()
    source = tmp_path / "pair.jsonl"
    source.write_text("".join(json.dumps(reading) + "\n" for reading in (first, first, second)))
    with ReadingStore(tmp_path / "store") as store:
        counts = run_ingest(FileSource(source), store, threading.Event())
    assert (counts.accepted, counts.duplicates, counts.rejected) == (1, 1, 1)
    (letter,) = iter_dead_letters(tmp_path / "store")
    assert (
        "conflicting duplicate" in letter["reason"]
        and json.loads(letter["raw"])["torque_nm"] == second["torque_nm"]
    )
    stored = read_store(tmp_path / "store")["torque_nm"].tolist()
    record_reliability("readings_lost", 1 - stored.count(first["torque_nm"]))
    assert stored == [first["torque_nm"]]


@pytest.mark.reliability("files", "a timestamp beyond the allowed clock skew", "dead letter")
def test_file_ingestion_refuses_readings_from_the_future(tmp_path):
    source = tmp_path / "future.jsonl"
    source.write_text(json.dumps(hostile.future_reading()) + "\n" + GOOD_LINE.decode() + "\n")
    with ReadingStore(tmp_path / "store") as store:
        counts = run_ingest(FileSource(source), store, threading.Event())
    assert (counts.accepted, counts.rejected) == (1, 1)
    (letter,) = iter_dead_letters(tmp_path / "store")
    assert "ahead of this machine's clock" in letter["reason"]


@pytest.fixture(scope="module")
def client(served_bundle):
    app = create_app({"BUNDLE": served_bundle, "MODEL_VERSION": "3", "MODEL_INFO": {"name": "pm"}})
    return app.test_client()


@pytest.mark.reliability(
    "/predict", "the hostile corpus, one payload per request", "4xx; the next good reading answered"
)
@pytest.mark.parametrize("name", PREDICT_NAMES, ids=[hostile.describe(n) for n in PREDICT_NAMES])
def test_predict_answers_every_hostile_payload_with_a_4xx_and_then_a_good_reading(
    client, name, record_reliability
):
    record_reliability("case", name)
    payload = hostile.PAYLOADS[name]
    answer = client.post("/predict", data=payload, content_type="application/json")
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.get_data()[:300])
    assert answer.get_json()["error"]
    assert answer.get_data().isascii() or "machine_id" in answer.get_json()["error"]
    good = client.post("/predict", json=hostile.GOOD)
    assert good.status_code == 200


@pytest.mark.parametrize("name", INGESTION_ONLY, ids=[hostile.describe(n) for n in INGESTION_ONLY])
def test_predict_scores_readings_whose_time_only_ingestion_refuses(client, name):
    answer = client.post("/predict", data=hostile.PAYLOADS[name], content_type="application/json")
    assert answer.status_code == 200, answer.get_data()[:300]
    assert _reasons(hostile.PAYLOADS[name]), "ingestion must still refuse it"


@pytest.mark.reliability("/predict", "the hostile corpus in one list", "4xx naming the reading")
def test_predict_refuses_the_corpus_in_one_list(client):
    payloads = [hostile.PAYLOADS[name] for name in PREDICT_NAMES]
    items = [payload for payload in payloads if split_payload(b"[" + payload + b"]")]
    body = b"[" + b",".join(items) + b"]"
    answer = client.post("/predict", data=body, content_type="application/json")
    assert 400 <= answer.status_code < 500


@pytest.mark.parametrize("value", ["M0001", 'M"1": x', "a b", "~", " M", "M ", "M\x00", "Mé", "", "M\u200b"])
def test_the_openapi_pattern_and_the_parser_agree_on_machine_ids(value):
    import re

    assert (re.fullmatch(schema.MACHINE_ID_PATTERN, value) is not None) == (
        schema.machine_id_problem(value) is None
    )
