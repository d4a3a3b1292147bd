"""`predmaint ingest` as a process: kill -9 at random moments, SIGTERM, one-line errors."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from predmaint.datasets import to_json_lines
from predmaint.ingest.store import iter_dead_letters, read_store

PREDMAINT = str(Path(sys.executable).parent / "predmaint")


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["machine_id", "seq"]).reset_index(drop=True)


def checkpoint_batch(store: Path) -> int:
    path = store / "_state" / "checkpoint.json"
    return json.loads(path.read_text())["batch"] if path.exists() else 0


@pytest.fixture
def noisy_source(tmp_path, simulate_frame):
    frame = simulate_frame(machines=10, steps=2000, seed=21)
    lines = to_json_lines(frame).splitlines()
    rng = random.Random(5)
    lines += [rng.choice(lines) for _ in range(1000)] + [f"garbage {i}" for i in range(400)]
    rng.shuffle(lines)
    path = tmp_path / "noisy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, frame


def ingest(source: Path, store: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PREDMAINT, "ingest", "--source", f"file:{source}", "--store", str(store), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.reliability(
    "the store", "SIGKILL at 10 random moments of a run", "survived; the store equals one clean run"
)
@pytest.mark.slow
def test_kill_9_at_random_moments_then_restart_equals_one_clean_run(
    tmp_path, noisy_source, record_reliability
):
    source, frame = noisy_source
    clean = ingest(source, tmp_path / "clean", "--batch-size", "300")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["accepted"] == 20_000

    crashed = tmp_path / "crashed"
    rng = random.Random(11)
    seen_batches = []
    for _ in range(10):
        process = subprocess.Popen(
            [
                PREDMAINT,
                "ingest",
                "--source",
                f"file:{source}",
                "--store",
                str(crashed),
                "--batch-size",
                "50",
                "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.0, 2.0))  # start-up takes about 1 s, then ~13 ms per batch
        process.send_signal(signal.SIGKILL)
        process.wait()
        seen_batches.append(checkpoint_batch(crashed))
    final = ingest(source, crashed, "--batch-size", "300")
    assert final.returncode == 0, final.stderr
    # The kills landed at different points of the run, not all before it started or after it ended.
    assert len(set(seen_batches)) >= 3, seen_batches

    keys = [
        set(zip(s["machine_id"], s["seq"], strict=True))
        for s in map(read_store, (tmp_path / "clean", crashed))
    ]
    record_reliability("readings_lost", len(keys[0] - keys[1]))
    pd.testing.assert_frame_equal(canonical(read_store(crashed)), canonical(read_store(tmp_path / "clean")))
    pd.testing.assert_frame_equal(canonical(read_store(crashed)), canonical(frame), check_dtype=False)
    letters = Counter(json.dumps(d, sort_keys=True) for d in iter_dead_letters(crashed))
    assert letters == Counter(json.dumps(d, sort_keys=True) for d in iter_dead_letters(tmp_path / "clean"))
    assert sum(letters.values()) == 400


@pytest.mark.reliability(
    "the store",
    "disk full (ENOSPC) on a real 512 KiB tmpfs",
    "exit 1 naming the disk; after space is freed, the store equals one clean run",
)
def test_a_full_disk_stops_ingestion_clearly_and_loses_nothing(tmp_path, noisy_source, record_reliability):
    source, frame = noisy_source
    clean = ingest(source, tmp_path / "clean", "--batch-size", "300")
    assert clean.returncode == 0, clean.stderr
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "predmaint-test", str(disk)], check=True)
    try:
        store = disk / "store"
        full = ingest(source, store, "--batch-size", "50")
        assert full.returncode == 1 and "No space left on device" in full.stderr, full.stderr
        assert "Traceback" not in full.stderr
        committed = len(read_store(store))  # what was committed before the disk filled stays readable
        assert 0 < committed < len(frame), committed
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = ingest(source, store, "--batch-size", "300")
        assert resumed.returncode == 0, resumed.stderr
        stored, expected = read_store(store), read_store(tmp_path / "clean")
        keys = [set(zip(s["machine_id"], s["seq"], strict=True)) for s in (expected, stored)]
        record_reliability("readings_lost", len(keys[0] - keys[1]))
        pd.testing.assert_frame_equal(canonical(stored), canonical(expected))
        letters = Counter(json.dumps(d, sort_keys=True) for d in iter_dead_letters(store))
        assert letters == Counter(
            json.dumps(d, sort_keys=True) for d in iter_dead_letters(tmp_path / "clean")
        )
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_sigterm_drains_and_exits_cleanly(tmp_path, simulate_frame):
    source = tmp_path / "live.jsonl"
    source.write_text(to_json_lines(simulate_frame(machines=5, steps=100, seed=2)))
    store = tmp_path / "store"
    process = subprocess.Popen(
        [PREDMAINT, "ingest", "--source", f"file:{source}", "--store", str(store), "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while checkpoint_batch(store) == 0:
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out)["accepted"] == 500
    assert "SIGTERM: finishing the current batch" in err
    assert not (store / "_state" / ".checkpoint.json.tmp").exists()
    assert len(read_store(store)) == 500


def test_ingest_json_summary_and_store_stats(tmp_path, simulate_frame):
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(simulate_frame(machines=3, steps=10, seed=2)) + "oops\n")
    result = ingest(source, tmp_path / "store")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("accepted", "duplicates", "rejected")} == {
        "accepted": 30,
        "duplicates": 0,
        "rejected": 1,
    }
    stats = subprocess.run(
        [PREDMAINT, "store", "stats", "--store", str(tmp_path / "store"), "--json"],
        capture_output=True,
        text=True,
    )
    data = json.loads(stats.stdout)
    assert {k: data[k] for k in ("readings", "machines", "dead_letters")} == {
        "readings": 30,
        "machines": 3,
        "dead_letters": 1,
    }
    assert (
        data["first_timestamp"] == "2026-01-01T00:00:00Z" and data["last_timestamp"] == "2026-01-01T00:09:00Z"
    )


def test_ingest_from_the_simulator(tmp_path):
    result = subprocess.run(
        [
            PREDMAINT,
            "ingest",
            "--source",
            "simulator",
            "--store",
            str(tmp_path / "store"),
            "-m",
            "4",
            "-s",
            "50",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accepted"] == 200


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "gopher://x"], "unknown source"),
        (["--source", "file:/absent/readings.jsonl"], "no such file"),
        (["--source", "http://127.0.0.1:8080", "--follow"], "--follow applies to --source file:PATH only"),
        (["--source", "http://127.0.0.1:8080", "--machines", "3"], "apply to --source simulator only"),
        (["--source", "simulator", "--machines", "0"], "Invalid value for '--machines'"),
        (["--source", "simulator", "--rate", "-1"], "--rate must be a positive number"),
        (["--source", "simulator", "--batch-size", "0"], "Invalid value for '--batch-size'"),
    ],
)
def test_bad_ingest_options_get_one_line(tmp_path, args, message):
    result = subprocess.run(
        [PREDMAINT, "ingest", "--store", str(tmp_path / "store"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_port_in_use_is_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [PREDMAINT, "ingest", "--store", str(tmp_path / "s"), "--source", f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and result.stderr.count("\n") == 1


def test_store_that_is_a_file_and_missing_store(tmp_path):
    (tmp_path / "file").write_text("")
    (tmp_path / "in.jsonl").write_text("")
    result = ingest(tmp_path / "in.jsonl", tmp_path / "file")
    assert result.returncode == 1 and "is a file" in result.stderr
    stats = subprocess.run(
        [PREDMAINT, "store", "stats", "--store", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert stats.returncode == 1 and "not a predmaint store" in stats.stderr


def test_token_file_mistakes_get_one_line_and_name_no_secret(tmp_path):
    short = tmp_path / "short"
    short.write_text("abc\n")
    spaced = tmp_path / "spaced"
    spaced.write_text("a token with blanks inside it\n")
    cases = [
        (["--source", "http://0.0.0.0:0"], "lets anyone write training data"),
        (["--source", "http://127.0.0.1:0", "--token-file", str(tmp_path / "none")], "no such file"),
        (["--source", "http://127.0.0.1:0", "--token-file", str(short)], "need at least 16"),
        (["--source", "http://127.0.0.1:0", "--token-file", str(spaced)], "printable ASCII without blanks"),
        (["--source", "http://127.0.0.1:0", "--token-file", str(tmp_path)], "cannot read it"),
        (["--source", "simulator", "--token-file", str(short)], "--token-file applies to --source http"),
    ]
    for args, message in cases:
        result = subprocess.run(
            [PREDMAINT, "ingest", "--store", str(tmp_path / "store"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)
        assert "abc" not in result.stderr and "blanks inside" not in result.stderr
