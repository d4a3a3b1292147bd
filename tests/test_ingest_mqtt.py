"""MQTT ingestion against a real Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from predmaint.datasets import to_json_lines
from predmaint.ingest.broker import LocalBroker
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import MqttSource
from predmaint.ingest.store import ReadingStore, iter_dead_letters, read_store

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path):
    with LocalBroker(tmp_path / "broker") as broker:
        yield broker


def publish(port: int, payloads: list[bytes], topic: str = "plant/sensors", host: str = "127.0.0.1") -> None:
    """Publish with QoS 1 and wait for every PUBACK: the broker has acknowledged them all."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"publisher-{time.monotonic_ns()}")
    client.connect(host, port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


class Ingestion:
    """`run_ingest` of an MQTT source in a thread, as `predmaint ingest --source mqtt://…` runs it."""

    def __init__(self, port: int, root: Path) -> None:
        self.source = MqttSource(
            f"mqtt://127.0.0.1:{port}/plant/sensors", client_id="predmaint-test", max_wait=0.05
        )
        self.stop = threading.Event()
        self.store = ReadingStore(root).open()
        self.thread = threading.Thread(
            target=run_ingest, args=(self.source, self.store, self.stop), daemon=True
        )
        self.thread.start()
        assert self.source.connected.wait(10), "the subscriber never connected"

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.store.index) < count:
            assert time.monotonic() < deadline, f"only {len(self.store.index)} of {count} readings arrived"
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()
        self.store.close()


def readings(simulate_frame, steps: int, seed: int = 1) -> list[bytes]:
    frame = simulate_frame(machines=4, steps=steps, seed=seed)
    return [line.encode() for line in to_json_lines(frame).splitlines()]


def test_published_readings_arrive_in_the_store(broker, tmp_path, simulate_frame):
    lines = readings(simulate_frame, 50)
    ingestion = Ingestion(broker.port, tmp_path / "store")
    try:
        publish(broker.port, lines[:100])  # one reading per message
        batch = b"[" + b",".join(lines[100:]) + b"]"  # the rest as one array message
        publish(broker.port, [batch, lines[0], b"not json"])  # plus a duplicate and a bad payload
        ingestion.wait_for(200)
    finally:
        ingestion.close()
    assert len(read_store(tmp_path / "store")) == 200
    letters = list(iter_dead_letters(tmp_path / "store"))
    assert [d["raw"] for d in letters] == ["not json"] and letters[0]["position"].startswith(
        "plant/sensors mid="
    )


def test_broker_restart_loses_nothing_it_acknowledged(broker, tmp_path, simulate_frame):
    lines = readings(simulate_frame, 150)
    root = tmp_path / "store"
    ingestion = Ingestion(broker.port, root)
    try:
        publish(broker.port, lines[:200])
        ingestion.wait_for(200)
        broker.stop()  # the broker goes away while ingestion runs …
        broker.start()  # … and comes back; the subscriber reconnects with backoff
        assert ingestion.source.connected.wait(30), "the subscriber did not reconnect"
        publish(broker.port, lines[200:400])
        ingestion.wait_for(400)
    finally:
        ingestion.close()
    # While ingestion is down, the broker queues for its persistent session, even across a restart.
    publish(broker.port, lines[400:])
    broker.stop()
    broker.start()
    ingestion = Ingestion(broker.port, root)
    try:
        ingestion.wait_for(600)
    finally:
        ingestion.close()
    stored = read_store(root)
    assert len(stored) == 600
    assert sorted(zip(stored["machine_id"], stored["seq"], strict=True)) == sorted(
        (r["machine_id"], r["seq"]) for r in map(json.loads, lines)
    )


def test_the_cli_subscribes_and_stops_on_sigterm(broker, tmp_path, simulate_frame):
    import signal
    import sys

    root = tmp_path / "store"
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "predmaint"),
            "ingest",
            "--source",
            f"mqtt://127.0.0.1:{broker.port}/plant/sensors",
            "--store",
            str(root),
            "--json",
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        lines = readings(simulate_frame, 5)
        while not (root / "_state" / "checkpoint.json").exists():
            assert process.poll() is None and time.monotonic() < deadline
            publish(broker.port, lines)  # repeated until the subscriber is there; duplicates are dropped
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert json.loads(out)["accepted"] == 20
    assert "subscribed to plant/sensors" in err
