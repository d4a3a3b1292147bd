"""The HTTP ingestion endpoint (waitress): 2xx only after the batch is durable, clear 4xx for bad bodies.

Everything here goes over real sockets on 127.0.0.1, including the raw requests of the hostile
corpus (tests/hostile.py) and clients that trickle or go quiet.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import hostile
import pytest

from predmaint.datasets import to_json_lines
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import HttpLimits, HttpSource, SourceError
from predmaint.ingest.store import ReadingStore, iter_dead_letters, read_store

TOKEN = "t0ken-for-the-tests-0123456789"
LIMITS = HttpLimits(max_body=200_000, idle_timeout=2, connection_limit=8, threads=2)


@contextlib.contextmanager
def running(root, token=None, limits=LIMITS, url="http://127.0.0.1:0"):
    """A running ingestion endpoint writing to the store at `root`; yields the source."""
    source = HttpSource(url, limits=limits, token=token)
    stop = threading.Event()
    store = ReadingStore(root).open()
    thread = threading.Thread(target=run_ingest, args=(source, store, stop), daemon=True)
    thread.start()
    try:
        yield source
    finally:
        stop.set()
        thread.join(15)
        store.close()
    assert not thread.is_alive(), "ingestion did not stop"


@pytest.fixture
def endpoint(tmp_path):
    """A running ingestion endpoint on a free loopback port, writing to a fresh store."""
    with running(tmp_path / "store") as source:
        yield source.address, tmp_path / "store"


def post(
    url: str, body: bytes, content_type: str = "application/json", token: str | None = None
) -> tuple[int, dict]:
    headers = {"Content-Type": content_type} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            text = error.read()
            try:
                return error.code, json.loads(text)
            except ValueError:  # waitress's own plain-text answers to protocol errors
                return error.code, {"error": text.decode(errors="replace")}


def raw(address: str, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes and read the answer until the server closes or goes quiet."""
    parts = urlsplit(address)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as connection:
        with contextlib.suppress(OSError):
            connection.sendall(request)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"Content-Length" in answer:
                    head, _, rest = answer.partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                    if len(rest) >= length:
                        break
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0


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
    assert status == 413 and "exceeds" in body["error"]
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


def test_wrong_methods_and_content_types_get_405_and_415(endpoint):
    address, root = endpoint
    request = urllib.request.Request(f"{address}/readings", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 405 and caught.value.headers["Allow"] == "POST"
    caught.value.close()
    status, body = post(f"{address}/readings", json.dumps(hostile.GOOD).encode(), "text/plain")
    assert status == 415 and "application/json" in body["error"]
    assert list(iter_dead_letters(root)) == [] and read_store(root).empty


@pytest.mark.reliability(
    "HTTP ingestion",
    "malformed HTTP: a negative, absent, huge or doubled Content-Length, a wrong content type, "
    "a bad request line, a 300 KB header",
    "4xx or closed connection; the endpoint stays up",
)
@pytest.mark.parametrize("name", list(hostile.http_attacks("h")), ids=hostile.describe)
def test_raw_hostile_requests_get_a_4xx_and_the_endpoint_stays_up(endpoint, name, record_reliability):
    record_reliability("case", name)
    address, root = endpoint
    parts = urlsplit(address)
    attack = hostile.http_attacks(parts.netloc)[name].replace(b"{auth}", b"")
    answer = raw(address, attack)
    assert answer == b"" or 400 <= status_of(answer) < 500, answer[:300]
    status, body = post(f"{address}/readings", json.dumps(hostile.GOOD).encode())
    assert (status, body["accepted"]) == (200, 1), body


@pytest.mark.reliability(
    "HTTP ingestion",
    "the hostile corpus, one payload per request",
    "4xx or dead letter; the next good reading stored",
)
@pytest.mark.parametrize("name", list(hostile.PAYLOADS), ids=hostile.describe)
def test_every_hostile_payload_is_answered_and_kept_and_the_endpoint_stays_up(
    endpoint, name, record_reliability
):
    record_reliability("case", name)
    address, root = endpoint
    status, body = post(f"{address}/readings", hostile.PAYLOADS[name])
    assert status in (200, 400), body
    assert body["accepted"] == 0 and body["rejected"] >= 1, body
    assert all(error["reason"].isascii() for error in body["errors"])
    status, body = post(f"{address}/readings", json.dumps(hostile.GOOD).encode())
    record_reliability("readings_lost", 1 - len(read_store(root)))
    assert (status, body["accepted"]) == (200, 1), body
    assert len(read_store(root)) == 1


@pytest.mark.reliability(
    "HTTP ingestion",
    "a conflicting duplicate (same key, other values)",
    "rejected and dead-lettered; the stored reading kept",
)
def test_a_conflicting_duplicate_is_answered_as_rejected_and_kept(endpoint, record_reliability):
    address, root = endpoint
    first, second = hostile.conflicting_pair()
    status, body = post(f"{address}/readings", json.dumps([first, first]).encode())
    assert (status, body["accepted"], body["duplicates"]) == (200, 1, 1), body
    status, body = post(f"{address}/readings", json.dumps(second).encode())
    assert (status, body["accepted"], body["duplicates"], body["rejected"]) == (200, 0, 0, 1), body
    assert "conflicting duplicate" in body["errors"][0]["reason"]
    stored = read_store(root)["torque_nm"].tolist()
    record_reliability("readings_lost", 1 - stored.count(first["torque_nm"]))
    assert stored == [first["torque_nm"]]
    (letter,) = iter_dead_letters(root)
    assert json.loads(letter["raw"])["torque_nm"] == second["torque_nm"]


@pytest.mark.reliability("HTTP ingestion", "no bearer token, or a wrong one", "401; nothing stored")
def test_with_a_token_only_authenticated_posts_are_stored(tmp_path):
    root = tmp_path / "store"
    good = json.dumps(hostile.GOOD).encode()
    with running(root, token=TOKEN) as source:
        url = f"{source.address}/readings"
        for token in (None, "wrong", TOKEN[:-1], TOKEN + "x", "Basic " + TOKEN):
            request = urllib.request.Request(url, data=good, method="POST")
            if token:
                request.add_header("Authorization", token if token.startswith("Basic") else f"Bearer {token}")
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=10)
            assert caught.value.code == 401
            assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
            caught.value.close()
        assert read_store(root).empty and list(iter_dead_letters(root)) == []
        with urllib.request.urlopen(f"{source.address}/health", timeout=10) as response:
            assert response.status == 200  # probes need no token
        status, body = post(url, good, token=TOKEN)
        assert (status, body["accepted"]) == (200, 1)
    assert len(read_store(root)) == 1


@pytest.mark.reliability("HTTP ingestion", "listening beyond loopback without a token", "refused at start")
def test_listening_beyond_loopback_needs_a_token(tmp_path):
    with pytest.raises(SourceError, match="token"):
        HttpSource("http://0.0.0.0:0")
    source = HttpSource("http://0.0.0.0:0", token=TOKEN)  # binds; nothing is served until units()
    source.server.close()


def test_bad_urls_are_refused_clearly():
    for url in ("http://127.0.0.1", "http://127.0.0.1:notaport", "http://:8081", "https://127.0.0.1:1"):
        with pytest.raises(SourceError, match="expected http://HOST:PORT"):
            HttpSource(url)


@pytest.mark.reliability(
    "HTTP ingestion",
    "slow clients filling the connection limit",
    "dropped after the idle timeout; a good client served",
)
def test_quiet_and_trickling_clients_hold_no_worker_and_are_dropped(tmp_path):
    root = tmp_path / "store"
    good = json.dumps(hostile.GOOD).encode()
    with running(root) as source:
        parts = urlsplit(source.address)
        # Every connection slot taken by a client that sends half a request, then goes quiet.
        quiet = [socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(8)]
        for connection in quiet:
            connection.sendall(b"POST /readings HTTP/1.1\r\nHost: x\r\nContent-Len")
        started = time.monotonic()
        status, body = post(f"{source.address}/readings", good)  # waits for a slot, then is served
        assert (status, body["accepted"]) == (200, 1)
        assert time.monotonic() - started < LIMITS.idle_timeout + 10
        for connection in quiet:  # each was closed by the server: reading gives end-of-file
            connection.settimeout(10)
            assert connection.recv(100) == b"", "a quiet client was not disconnected"
            connection.close()
