"""The HTTP ingestion endpoint: 2xx only after the batch is durable, clear 4xx for bad bodies."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from predmaint.datasets import to_json_lines
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import HttpSource
from predmaint.ingest.store import ReadingStore, iter_dead_letters, read_store


@pytest.fixture
def endpoint(tmp_path):
    """A running ingestion endpoint on a free loopback port, writing to a fresh store."""
    source = HttpSource("http://127.0.0.1:0", max_body=200_000)
    stop = threading.Event()
    store = ReadingStore(tmp_path / "store").open()
    thread = threading.Thread(target=run_ingest, args=(source, store, stop), daemon=True)
    thread.start()
    yield source.address, tmp_path / "store"
    stop.set()
    thread.join(10)
    store.close()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_batches_are_stored_once_and_answered_after_commit(endpoint, simulate_frame):
    address, root = endpoint
    frame = simulate_frame(machines=3, steps=20, seed=1)
    readings = [json.loads(line) for line in to_json_lines(frame).splitlines()]
    status, body = post(f"{address}/readings", json.dumps(readings[:40]).encode())
    assert (status, body["accepted"], body["duplicates"], body["rejected"]) == (200, 40, 0, 0)
    assert len(read_store(root)) == 40  # durable before the answer
    status, body = post(f"{address}/readings", json.dumps(readings[30:]).encode())  # a retried overlap
    assert (status, body["accepted"], body["duplicates"]) == (200, 20, 10)
    status, body = post(f"{address}/readings", json.dumps(readings[0]).encode())  # a single reading
    assert (status, body["duplicates"]) == (200, 1)
    assert len(read_store(root)) == 60


def test_invalid_readings_are_dead_lettered_and_named_in_the_answer(endpoint):
    address, root = endpoint
    good = {
        "machine_id": "M1",
        "seq": 0,
        "timestamp": "2026-01-01T00:00:00Z",
        "product_type": "L",
        "air_temperature_k": 300.0,
        "process_temperature_k": 310.0,
        "rotational_speed_rpm": 1500,
        "torque_nm": 40.0,
        "tool_wear_min": 0,
    }
    status, body = post(
        f"{address}/readings", json.dumps([good, good | {"seq": 1, "torque_nm": -5}]).encode()
    )
    assert (status, body["accepted"], body["rejected"]) == (200, 1, 1)
    assert body["errors"] == [
        {"position": "item 1", "reason": "torque_nm: -5 Nm is outside the physical range 0–200 Nm"}
    ]
    assert [d["position"] for d in iter_dead_letters(root)] == ["item 1"]


def test_json_lines_bodies(endpoint, simulate_frame):
    address, root = endpoint
    body = to_json_lines(simulate_frame(machines=2, steps=5, seed=1)).encode()
    status, answer = post(f"{address}/readings", body, "application/x-ndjson")
    assert (status, answer["accepted"]) == (200, 10)


def test_a_body_that_is_not_json_is_kept_and_answered_400(endpoint):
    address, root = endpoint
    status, body = post(f"{address}/readings", b"temperature=300")
    assert status == 400 and body["rejected"] == 1 and "not a JSON" in body["error"]
    assert [d["raw"] for d in iter_dead_letters(root)] == ["temperature=300"]


def test_oversize_unknown_paths_and_health(endpoint):
    address, _ = endpoint
    status, body = post(f"{address}/readings", b"[" + b" " * 300_000 + b"]")
    assert status == 413 and "body over" in body["error"]
    assert post(f"{address}/elsewhere", b"{}")[0] == 404
    with urllib.request.urlopen(f"{address}/health", timeout=10) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{address}/nothing", timeout=10)
    assert caught.value.code == 404
    caught.value.close()


def test_missing_content_length_is_refused(endpoint):
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint[0])
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("POST", "/readings")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 411
        response.read()
    finally:
        connection.close()
