"""MQTT ingestion against a real Mosquitto broker on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import hostile
import paho.mqtt.client as mqtt
import pytest

from predmaint.datasets import to_json_lines
from predmaint.ingest.broker import LocalBroker
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import MqttAuth, MqttSource, SourceError
from predmaint.ingest.store import ReadingStore, install_id, iter_dead_letters, read_store

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tmp_path):
    with LocalBroker(tmp_path / "broker") as broker:
        yield broker


def publish(
    port: int,
    payloads: list[bytes],
    topic: str = "plant/sensors",
    host: str = "127.0.0.1",
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
) -> None:
    """Publish with QoS 1 and wait for every PUBACK: the broker has acknowledged them all."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"publisher-{time.monotonic_ns()}")
    if username is not None:
        client.username_pw_set(username, password)
    if ca_file is not None:
        client.tls_set(ca_certs=str(ca_file))
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

    def __init__(
        self, port: int, root: Path, *, scheme: str = "mqtt", auth: MqttAuth | None = None, wait: bool = True
    ) -> None:
        self.source = MqttSource(
            f"{scheme}://127.0.0.1:{port}/plant/sensors", client_id="predmaint-test", max_wait=0.05, auth=auth
        )
        self.stop = threading.Event()
        self.store = ReadingStore(root).open()
        self.thread = threading.Thread(
            target=run_ingest, args=(self.source, self.store, self.stop), daemon=True
        )
        self.thread.start()
        if wait:
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


@pytest.mark.reliability(
    "MQTT ingestion",
    "broker restarts, while ingesting and while ingestion is down",
    "survived; every acknowledged reading stored once",
)
def test_broker_restart_loses_nothing_it_acknowledged(broker, tmp_path, simulate_frame, record_reliability):
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
    sent = {(r["machine_id"], r["seq"]) for r in map(json.loads, lines)}
    record_reliability(
        "readings_lost", len(sent - set(zip(stored["machine_id"], stored["seq"], strict=True)))
    )
    assert len(stored) == 600
    assert sorted(zip(stored["machine_id"], stored["seq"], strict=True)) == sorted(sent)


@pytest.mark.parametrize("secure", [False, True], ids=["anonymous", "password-and-tls"])
def test_the_cli_subscribes_and_stops_on_sigterm(tmp_path, simulate_frame, secure):
    import signal
    import sys

    root = tmp_path / "store"
    broker = LocalBroker(tmp_path / "broker", users=USERS if secure else None, tls=secure).start()
    command = [str(Path(sys.executable).parent / "predmaint"), "ingest", "--source"]
    command += [f"{broker.url}/plant/sensors", "--store", str(root), "--json", "-v"]
    credentials: dict = {}
    if secure:
        password_file = tmp_path / "mqtt-password"
        password_file.write_text(USERS["ingest"] + "\n")
        command += ["--mqtt-username", "ingest", "--mqtt-password-file", str(password_file)]
        command += ["--mqtt-ca-file", str(broker.ca_file)]
        credentials = {"username": "sensor", "password": USERS["sensor"], "ca_file": broker.ca_file}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lines = readings(simulate_frame, 5)
        while not (root / "_state" / "checkpoint.json").exists():
            assert process.poll() is None and time.monotonic() < deadline
            publish(broker.port, lines, **credentials)  # repeated until the subscriber is there
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        broker.stop()
    assert process.returncode == 0, err
    assert json.loads(out)["accepted"] == 20
    assert "subscribed to plant/sensors" in err
    assert USERS["ingest"] not in err


def test_mqtt_options_elsewhere_are_refused(tmp_path):
    import sys

    result = subprocess.run(
        [str(Path(sys.executable).parent / "predmaint"), "ingest", "--source", "simulator"]
        + ["--store", str(tmp_path / "s"), "--mqtt-username", "u", "--client-id", "c"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--mqtt-username, --client-id apply to --source mqtt" in result.stderr


USERS = {"ingest": "ingest-password-1", "sensor": "sensor-password-2"}


@pytest.mark.reliability("MQTT ingestion", "anonymous clients and wrong passwords", "refused by the broker")
def test_with_passwords_only_the_right_credentials_get_in(tmp_path, simulate_frame):
    lines = readings(simulate_frame, 5)
    with LocalBroker(tmp_path / "broker", users=USERS) as broker:
        with pytest.raises((RuntimeError, OSError, AssertionError, ValueError)):
            publish(broker.port, lines[:1])  # anonymous publishers are refused
        wrong = Ingestion(
            broker.port, tmp_path / "wrong", auth=MqttAuth("ingest", "not-the-password"), wait=False
        )
        assert not wrong.source.connected.wait(3), "a wrong password got in"
        wrong.close()
        ingestion = Ingestion(broker.port, tmp_path / "store", auth=MqttAuth("ingest", USERS["ingest"]))
        try:
            publish(broker.port, lines, username="sensor", password=USERS["sensor"])
            ingestion.wait_for(len(lines))
        finally:
            ingestion.close()
    assert read_store(tmp_path / "wrong").empty


# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector.
@pytest.mark.reliability("MQTT ingestion", "a broker certificate from an unknown CA", "never connects")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_over_tls_the_broker_certificate_is_verified(tmp_path, simulate_frame):
    lines = readings(simulate_frame, 5)
    with LocalBroker(tmp_path / "broker", users=USERS, tls=True) as broker:
        assert broker.url.startswith("mqtts://")
        auth = MqttAuth("ingest", USERS["ingest"])
        untrusted = Ingestion(broker.port, tmp_path / "untrusted", scheme="mqtts", auth=auth, wait=False)
        assert not untrusted.source.connected.wait(3), "a certificate no CA of ours signed was trusted"
        untrusted.close()
        auth = MqttAuth("ingest", USERS["ingest"], ca_file=broker.ca_file)
        ingestion = Ingestion(broker.port, tmp_path / "store", scheme="mqtts", auth=auth)
        try:
            credentials = {"username": "sensor", "password": USERS["sensor"], "ca_file": broker.ca_file}
            publish(broker.port, lines, **credentials)
            ingestion.wait_for(len(lines))
        finally:
            ingestion.close()


@pytest.mark.reliability(
    "MQTT ingestion", "credentials in the URL, wildcard topics, queries", "refused at start"
)
@pytest.mark.parametrize(
    "url, message",
    [
        ("mqtt://user:secret@127.0.0.1:1883/t", "credentials in the URL are refused"),
        ("mqtt://127.0.0.1:1883/plant/#", "wildcards"),
        ("mqtt://127.0.0.1:1883/", "expected mqtt://HOST:PORT/TOPIC"),
        ("mqtt://127.0.0.1:99999/t", "expected mqtt://HOST:PORT/TOPIC"),
    ],
)
def test_bad_mqtt_urls_are_refused_clearly(url, message):
    with pytest.raises(SourceError, match=message) as caught:
        MqttSource(url, client_id="x")
    assert "secret" not in str(caught.value)


@pytest.mark.reliability(
    "MQTT ingestion", "the hostile corpus as messages", "dead-lettered and acknowledged once (no redelivery)"
)
def test_poison_messages_are_dead_lettered_and_acknowledged_once(broker, tmp_path):
    root = tmp_path / "store"
    payloads = list(hostile.PAYLOADS.values())
    ingestion = Ingestion(broker.port, root)
    try:
        publish(broker.port, [*payloads, json.dumps(hostile.GOOD).encode()])
        ingestion.wait_for(1)
        deadline = time.monotonic() + 30
        while len(list(iter_dead_letters(root))) < len(payloads):
            assert time.monotonic() < deadline, "not every poison message became a dead letter"
            time.sleep(0.1)
    finally:
        ingestion.close()
    letters = len(list(iter_dead_letters(root)))
    again = Ingestion(broker.port, root)  # same session: anything unacknowledged would come back
    try:
        publish(broker.port, [json.dumps(hostile.GOOD | {"seq": 1}).encode()])
        again.wait_for(2)
    finally:
        again.close()
    assert len(list(iter_dead_letters(root))) == letters, "a poison message was redelivered"


@pytest.mark.reliability(
    "MQTT ingestion",
    "a conflicting duplicate (same key, other values)",
    "dead letter; the stored reading kept",
)
def test_a_conflicting_duplicate_is_dead_lettered(broker, tmp_path, record_reliability):
    root = tmp_path / "store"
    first, second = hostile.conflicting_pair()
    ingestion = Ingestion(broker.port, root)
    try:
        publish(broker.port, [json.dumps(first).encode(), json.dumps(second).encode()])
        ingestion.wait_for(1)
        deadline = time.monotonic() + 30
        while not list(iter_dead_letters(root)):
            assert time.monotonic() < deadline, "the conflicting reading did not become a dead letter"
            time.sleep(0.1)
    finally:
        ingestion.close()
    (letter,) = iter_dead_letters(root)
    assert "conflicting duplicate" in letter["reason"]
    stored = read_store(root)["torque_nm"].tolist()
    record_reliability("readings_lost", 1 - stored.count(first["torque_nm"]))
    assert stored == [first["torque_nm"]]


def test_each_store_has_its_own_random_install_id(tmp_path):
    first, second = install_id(tmp_path / "a"), install_id(tmp_path / "b")
    assert first != second and len(first) == 16
    assert install_id(tmp_path / "a") == first  # stable: the broker keeps the session's messages
