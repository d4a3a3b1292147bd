"""One corpus of hostile payloads, used at every input boundary: HTTP ingestion, MQTT, /predict, files.

Each payload is one JSON document (one line, no newline inside) that must be refused with a reason:
a 4xx at an HTTP boundary, a dead letter everywhere else. None may crash the process that reads it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from predmaint import schema

GOOD: dict = dict(schema.EXAMPLE_READING)
_GOOD_TEXT = json.dumps(GOOD)


def _with(field: str, raw_value: str) -> bytes:
    """GOOD as JSON text with `field`'s value replaced by raw JSON text."""
    before = json.dumps(GOOD | {field: "__X__"})
    return before.replace('"__X__"', raw_value).encode()


def _id(value: str) -> bytes:
    return json.dumps(GOOD | {"machine_id": value}).encode()  # ensure_ascii: escapes reach the parser


PAYLOADS: dict[str, bytes] = {
    "depth bomb (array, 2 KB)": b"[" * 1000 + b"]" * 1000,
    "depth bomb (object)": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "depth bomb in a field": _with("torque_nm", "[" * 1000 + "]" * 1000),
    "huge integer (5,000 digits)": _with("seq", "9" * 5000),
    "huge integer in a float field": _with("torque_nm", "7" * 5000),
    "huge exponent": _with("torque_nm", "1e999"),
    "lone surrogate key": (_GOOD_TEXT[:-1] + ', "\\ud800": 1}').encode(),
    "lone surrogate in machine_id": _with("machine_id", '"M\\udc00"'),
    "NUL in machine_id": _id("M\x001"),
    "zero-width space in machine_id": _id("M\u200b1"),
    "right-to-left override in machine_id": _id("\u202e1M"),
    "newline in machine_id": _id("M1\n"),
    "surrounding whitespace in machine_id": _id(" M1"),
    "10,000-character machine_id": _id("M" * 10_000),
    "duplicate key": (_GOOD_TEXT[:-1] + ', "seq": 7}').encode(),
    "duplicate key with whitespace": (_GOOD_TEXT[:-1] + ', "seq" : 7}').encode(),
    "timestamp in year 9999": _with("timestamp", '"9999-12-31T23:59:59Z"'),
    "timestamp in 1970": _with("timestamp", '"1970-01-01T00:00:00Z"'),
    "timestamp without zone": _with("timestamp", '"2026-01-01T00:00:00"'),
    "timestamp not UTC": _with("timestamp", '"2026-01-01T00:00:00+02:00"'),
    "NaN": _with("torque_nm", "NaN"),
    "-Infinity": _with("air_temperature_k", "-Infinity"),
    "boolean for a number": _with("torque_nm", "true"),
    "string for a number": _with("torque_nm", '"42.8"'),
    "label out of range": _with("machine_failure", "2"),
    "unknown field": (_GOOD_TEXT[:-1] + ', "speed": 1}').encode(),
    "1,000 unknown fields": (_GOOD_TEXT[:-1] + "".join(f', "f{i}": {i}' for i in range(1000)) + "}").encode(),
    "missing fields": b'{"machine_id": "M1"}',
    "a number": b"3",
    "null": b"null",
    "a string": b'"reading"',
    "not UTF-8": b"\xff\xfe{}",
    "UTF-8-encoded surrogate": _id("M1").replace(b'"M1"', b'"M\xed\xa0\x801"'),
    "not JSON": b"machine_id=M1",
}
"""Name → payload. Every one of them is refused with a reason."""


def future_reading(ahead: timedelta = timedelta(hours=2), **fields) -> dict:
    """GOOD stamped `ahead` of this machine's clock (beyond the default skew of one hour)."""
    stamp = datetime.now(UTC) + ahead
    return GOOD | {"timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")} | fields


def conflicting_pair(seq: int = 11) -> tuple[dict, dict]:
    """Two readings with the same (machine_id, seq) but different values: the second must not vanish."""
    first = GOOD | {"seq": seq}
    return first, first | {"torque_nm": first["torque_nm"] + 10}


def http_attacks(host: str, path: str = "/readings") -> dict[str, bytes]:
    """Raw HTTP requests that must get a 4xx (or a closed connection), never a crash.

    `{auth}` in each is where a test puts its `Authorization:` header line (or nothing).
    """
    body = _GOOD_TEXT.encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{{auth}}"
    return {
        "negative Content-Length": (
            head + "Content-Type: application/json\r\nContent-Length: -1\r\n\r\n"
        ).encode()
        + body,
        "no Content-Length": (head + "Content-Type: application/json\r\nConnection: close\r\n\r\n").encode()
        + body,
        "Content-Length larger than the body limit": (
            head + "Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n"
        ).encode()
        + body,
        "two Content-Lengths": (
            head + "Content-Type: application/json\r\nContent-Length: 3\r\nContent-Length: 300\r\n\r\n"
        ).encode()
        + body,
        "wrong content type": (
            head + f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
        "malformed request line": b"POST\r\n\r\n",
        "huge header": (head + "X-Pad: " + "a" * 300_000 + "\r\n\r\n").encode(),
    }


def describe(name: str) -> str:
    """A pytest id for a payload name."""
    return name.replace(" ", "-")


def lines(payloads: dict[str, bytes] | None = None) -> bytes:
    """The payloads as JSON lines (every payload is a single line)."""
    chosen = PAYLOADS if payloads is None else payloads
    assert all(b"\n" not in payload for payload in chosen.values())
    return b"".join(payload + b"\n" for payload in chosen.values())
