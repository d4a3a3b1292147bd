"""Ingestion throughput: parse → validate → dedupe → durable Parquet, per source, beside a floor.

The floor is pyarrow's own JSON reader and Parquet writer on the same file: no validation, no
dedupe, no dead letters, no durability, no checkpoint — the least any JSON → Parquet path costs.
"""

from __future__ import annotations

import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.json as pa_json
import pyarrow.parquet as pq

from predmaint.datasets import write_readings
from predmaint.ingest.broker import LocalBroker
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import FileSource, HttpSource, MqttSource
from predmaint.ingest.store import ReadingStore
from predmaint.simulator import SimulationSpec, simulate

FILE_READINGS = 500_000
PUSH_READINGS = 100_000
HTTP_BATCH = 1_000
MQTT_BATCH = 100


def _timed(func) -> float:
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def _file_path(source: Path, store: Path) -> float:
    def run() -> None:
        with ReadingStore(store) as writer:
            counts = run_ingest(FileSource(source), writer, threading.Event())
        assert counts.accepted == FILE_READINGS

    return _timed(run)


def _floor(source: Path, out: Path) -> float:
    return _timed(lambda: pq.write_table(pa_json.read_json(source), out, compression="zstd"))


def _push(source, store: Path, send) -> float:
    """Time from the first send until every reading is committed."""
    stop = threading.Event()
    writer = ReadingStore(store).open()
    thread = threading.Thread(target=run_ingest, args=(source, writer, stop), daemon=True)
    thread.start()
    if isinstance(source, MqttSource):
        assert source.connected.wait(10)
    started = time.perf_counter()
    send()
    while len(writer.index) < PUSH_READINGS:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join(30)
    writer.close()
    return elapsed


def run() -> tuple[str, list[str]]:
    """Measure and return (section title, markdown lines)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "readings.jsonl"
        write_readings(simulate(SimulationSpec(machines=100, steps=FILE_READINGS // 100, seed=1)), source)
        floor = min(_floor(source, tmp_path / f"floor{i}.parquet") for i in range(3))
        file_time = min(_file_path(source, tmp_path / f"store-file{i}") for i in range(3))
        rows.append(("file (JSONL)", FILE_READINGS, file_time, floor))

        lines = source.read_text().splitlines()[:PUSH_READINGS]
        http = HttpSource("http://127.0.0.1:0")
        bodies = [
            ("[" + ",".join(lines[i : i + HTTP_BATCH]) + "]").encode()
            for i in range(0, len(lines), HTTP_BATCH)
        ]

        def post(body: bytes) -> None:
            request = urllib.request.Request(
                f"{http.address}/readings", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200

        def send_http() -> None:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(post, bodies))

        http_time = _push(http, tmp_path / "store-http", send_http)
        rows.append((f"HTTP ({HTTP_BATCH} readings per POST, 8 clients)", PUSH_READINGS, http_time, None))

        import paho.mqtt.client as mqtt

        with LocalBroker(tmp_path / "broker") as broker:
            source_mqtt = MqttSource(f"{broker.url}/bench", client_id="bench-ingest")
            payloads = [
                ("[" + ",".join(lines[i : i + MQTT_BATCH]) + "]").encode()
                for i in range(0, len(lines), MQTT_BATCH)
            ]

            def send_mqtt() -> None:
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
                client.max_inflight_messages_set(100)
                client.connect("127.0.0.1", broker.port)
                client.loop_start()
                infos = [client.publish("bench", payload, qos=1) for payload in payloads]
                for info in infos:
                    info.wait_for_publish(60)
                client.disconnect()
                client.loop_stop()

            mqtt_time = _push(source_mqtt, tmp_path / "store-mqtt", send_mqtt)
        rows.append((f"MQTT QoS 1 ({MQTT_BATCH} readings per message)", PUSH_READINGS, mqtt_time, None))

    lines_md = [
        "Readings per second through the whole path: parse, validate against the contract, drop "
        "duplicates, write durable Parquet (fsync) with a checkpoint, compact. The file path runs "
        f"in-process on {FILE_READINGS:,} readings (best of 3); HTTP and MQTT count from the first "
        f"send until all {PUSH_READINGS:,} readings are committed. Floor: `pyarrow.json.read_json` + "
        "`pyarrow.parquet.write_table` of the same file, no validation, dedupe or durability (best of 3).",
        "",
        "| source | readings | seconds | readings/s | floor readings/s | predmaint time ÷ floor time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, count, seconds, floor_seconds in rows:
        floor_rate = f"{count / floor_seconds:,.0f}" if floor_seconds else "—"
        ratio = f"{seconds / floor_seconds:.1f}×" if floor_seconds else "—"
        lines_md.append(
            f"| {name} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} | {floor_rate} | {ratio} |"
        )
    return "Ingestion", lines_md
