"""Ingestion into the store: validation, dead letters, exactly-once, recovery, retries."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from predmaint import schema
from predmaint.datasets import to_json_lines
from predmaint.ingest import store as store_module
from predmaint.ingest.parse import DeadLetter, explain, parse_items, row_json, split_payload, validate_frame
from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import FileSource, SimulatorSource, SourceError, open_source
from predmaint.ingest.store import (
    KeyIndex,
    ReadingStore,
    StoreError,
    committed_files,
    fingerprints,
    iter_dead_letters,
    read_store,
    store_stats,
)
from predmaint.simulator import SimulationSpec

GARBAGE = [
    "not json at all",
    '{"machine_id": "M0001"',
    "[1, 2, 3]",
    "null",
    '{"machine_id": "M0001", "seq": 1}',
    "\x00\x01binary",
    "{}",
]


def noisy_file(path: Path, frame: pd.DataFrame, garbage_share: float, duplicate_share: float, seed: int = 0):
    """Write readings with garbage lines and duplicated readings mixed in; return the garbage."""
    rng = random.Random(seed)
    lines = to_json_lines(frame).splitlines()
    duplicates = [rng.choice(lines) for _ in range(int(len(lines) * duplicate_share))]
    garbage = [rng.choice(GARBAGE) + f" #{i}" for i in range(int(len(lines) * garbage_share))]
    everything = lines + duplicates + garbage
    rng.shuffle(everything)
    path.write_text("\n".join(everything) + "\n", encoding="utf-8")
    return garbage


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["machine_id", "seq"]).reset_index(drop=True)


def ingest_file(path: Path, root: Path, batch_size: int = 50_000):
    with ReadingStore(root) as store:
        return run_ingest(FileSource(path, batch_size=batch_size), store, threading.Event())


@pytest.mark.reliability(
    "files", "garbage lines and resent readings mixed into 50,000", "dead letters and dropped duplicates"
)
def test_done_when_50000_readings_with_garbage_and_duplicates(tmp_path, simulate_frame):
    frame = simulate_frame(machines=25, steps=2000, seed=3)
    source = tmp_path / "noisy.jsonl"
    garbage = noisy_file(source, frame, garbage_share=0.02, duplicate_share=0.05)
    counts = ingest_file(source, tmp_path / "store", batch_size=7_000)
    assert counts.accepted == 50_000
    assert counts.duplicates == 2_500
    assert counts.rejected == len(garbage) == 1_000
    stored = read_store(tmp_path / "store")
    pd.testing.assert_frame_equal(canonical(stored), canonical(frame), check_dtype=False)
    letters = list(iter_dead_letters(tmp_path / "store"))
    assert sorted(d["raw"] for d in letters) == sorted(garbage)
    assert all(d["reason"] and d["position"].startswith("byte ") for d in letters)
    stats = store_stats(tmp_path / "store")
    assert (stats["readings"], stats["machines"], stats["dead_letters"]) == (50_000, 25, 1_000)
    assert stats["first_timestamp"] == "2026-01-01T00:00:00Z"


def test_store_is_a_hive_partitioned_dataset_in_few_files(tmp_path, simulate_frame):
    frame = simulate_frame(machines=10, steps=3000, seed=1)  # 3000 minutes: three dates
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(frame))
    ingest_file(source, tmp_path / "store", batch_size=1_000)  # 30 batches
    dataset = ds.dataset(str(tmp_path / "store" / "readings"), partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 30_000
    assert sorted({str(d) for d in table.column("date").to_pylist()}) == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]
    files = list((tmp_path / "store" / "readings").rglob("*.parquet"))
    assert len(files) == 3  # one per date after compaction, not one per batch


def test_rerun_and_overlapping_files_store_nothing_twice(tmp_path, simulate_frame):
    frame = simulate_frame(machines=4, steps=500, seed=2)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(to_json_lines(frame.iloc[:1500]))
    second.write_text(to_json_lines(frame.iloc[1000:]))  # 500 readings overlap
    assert ingest_file(first, tmp_path / "store").accepted == 1500
    assert ingest_file(first, tmp_path / "store").accepted == 0  # resumed at its end: nothing new
    counts = ingest_file(second, tmp_path / "store")
    assert (counts.accepted, counts.duplicates) == (500, 500)
    assert len(read_store(tmp_path / "store")) == 2000


def test_labels_are_optional_and_stored_as_null(tmp_path, simulate_frame):
    frame = simulate_frame(machines=2, steps=3, seed=0).drop(columns=list(schema.LABEL_FIELDS))
    source = tmp_path / "unlabelled.jsonl"
    source.write_text(to_json_lines(frame))
    assert ingest_file(source, tmp_path / "store").accepted == 6
    assert read_store(tmp_path / "store")["machine_failure"].isna().all()


def test_crash_leftovers_are_rolled_back_or_forward_on_open(tmp_path, simulate_frame):
    frame = simulate_frame(machines=3, steps=200, seed=4)
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(frame))
    root = tmp_path / "store"
    ingest_file(source, root, batch_size=100)
    partition = next((root / "readings").glob("date=*"))
    merged = next(partition.glob("part-*.parquet"))
    first, last = store_module._part_range(merged)
    # A batch written after the last checkpoint (uncommitted), a file already merged into the
    # compacted one, and a temporary file: all left by a crash at different moments.
    (partition / f"part-{last + 1:010d}-{last + 1:010d}.parquet").write_bytes(merged.read_bytes())
    (partition / f"part-{first:010d}-{first:010d}.parquet").write_bytes(merged.read_bytes())
    (partition / ".part-x.parquet.tmp").write_bytes(b"half")
    (root / "dead_letter" / f"part-{last + 1:010d}.jsonl").write_text('{"raw": "x"}\n')
    assert committed_files(root) == [merged]  # readers already see the consistent view
    with ReadingStore(root) as store:
        assert store.batch == last
    assert sorted(p.name for p in partition.iterdir()) == [merged.name]
    assert not list((root / "dead_letter").iterdir())
    kept = sorted(p.name for p in (root / "_state" / "quarantine").rglob("part-*"))
    assert kept == [f"part-{last + 1:010d}-{last + 1:010d}.parquet", f"part-{last + 1:010d}.jsonl"]
    pd.testing.assert_frame_equal(canonical(read_store(root)), canonical(frame), check_dtype=False)


def test_one_writer_at_a_time(tmp_path):
    with ReadingStore(tmp_path / "store"):
        with pytest.raises(StoreError, match="being written by another ingest process"):
            ReadingStore(tmp_path / "store").open()


def test_a_file_is_not_a_store(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is a file"):
        ReadingStore(tmp_path / "file").open()
    with pytest.raises(StoreError, match="not a predmaint store"):
        store_stats(tmp_path)


@pytest.mark.reliability("the store", "a corrupt checkpoint", "refused with a message")
def test_corrupt_checkpoint_is_named(tmp_path):
    root = tmp_path / "store"
    (root / "_state").mkdir(parents=True)
    (root / "_state" / "checkpoint.json").write_text("{not json")
    with pytest.raises(StoreError, match="checkpoint.json is corrupt"):
        ReadingStore(root).open()


@pytest.mark.reliability("the store", "write errors during commits", "retried with backoff; stored once")
def test_sink_errors_are_retried_with_backoff(tmp_path, simulate_frame, monkeypatch):
    frame = simulate_frame(machines=2, steps=50, seed=1)
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(frame) + "garbage\n")
    real_write = store_module.atomic_write
    failures = {"left": 3}

    def flaky(path, data):
        if failures["left"] and path.name == "checkpoint.json":
            failures["left"] -= 1
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "atomic_write", flaky)
    counts = ingest_file(source, tmp_path / "store")
    assert failures["left"] == 0
    assert (counts.accepted, counts.rejected, counts.batches) == (100, 1, 1)
    assert len(list(iter_dead_letters(tmp_path / "store"))) == 1  # not once per attempt


def test_persistent_sink_errors_stop_ingestion_without_losing_the_position(
    tmp_path, simulate_frame, monkeypatch
):
    frame = simulate_frame(machines=2, steps=50, seed=1)
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(frame))

    def broken(path, data):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store_module, "atomic_write", broken)
    with ReadingStore(tmp_path / "store") as store, pytest.raises(OSError):
        run_ingest(FileSource(source), store, threading.Event(), retry_attempts=2)
    monkeypatch.undo()
    assert ingest_file(source, tmp_path / "store").accepted == 100  # nothing was marked as done


def test_key_index_merges_without_forgetting(monkeypatch):
    monkeypatch.setattr(KeyIndex, "RECENT_LIMIT", 2)
    index = KeyIndex()
    keys = index.encode(pd.Series(["a", "b", "a"]), pd.Series([1, 1, 2]))
    assert not index.contains(keys).any()
    index.add(keys, np.array([10, 20, 30], dtype=np.uint64))  # past the limit: merged into the large level
    more = index.encode(pd.Series(["c"]), pd.Series([0]))
    index.add(more, np.array([40], dtype=np.uint64))  # stays in the recent level
    asked = index.encode(pd.Series(["a", "c", "b", "c"]), pd.Series([2, 0, 1, 1]))
    found, prints = index.lookup(asked)
    assert found.tolist() == [True, True, True, False] and prints.tolist() == [30, 40, 20, 0]
    assert len(index) == 4 and index.nbytes == 4 * 16


def test_a_reading_hashes_the_same_from_a_request_a_frame_and_the_disk(tmp_path, simulate_frame):
    frame = simulate_frame(machines=3, steps=20, seed=4)
    from_frame = validate_frame(frame, "sim").readings
    from_json = parse_items([row_json(row).encode() for row in frame.to_dict("records")]).readings
    arrow = schema.arrow_schema()

    def prints(readings):
        return fingerprints(pa.Table.from_pandas(readings, schema=arrow, preserve_index=False))

    with ReadingStore(tmp_path / "store") as store:
        store.commit(from_frame)
    on_disk = pq.read_table(next((tmp_path / "store" / "readings").rglob("*.parquet")), schema=arrow)
    assert (prints(from_frame) == prints(from_json)).all()
    assert sorted(fingerprints(on_disk).tolist()) == sorted(prints(from_frame).tolist())
    changed = from_json.assign(torque_nm=from_json["torque_nm"] + 1e-9)
    assert (prints(changed) != prints(from_json)).all()
    unlabelled = from_json.assign(machine_failure=pd.array([None] * len(from_json), "Int8"))
    assert (prints(unlabelled) != prints(from_json)).all()


def test_a_reading_that_reuses_a_stored_key_with_other_values_is_a_dead_letter(tmp_path, simulate_frame):
    readings = validate_frame(simulate_frame(machines=2, steps=5, seed=2), "sim").readings
    root = tmp_path / "store"
    with ReadingStore(root) as store:
        store.commit(readings)
    changed = readings.iloc[:3].assign(torque_nm=readings["torque_nm"].iloc[:3] + 5)
    with ReadingStore(root) as store:  # reopened: the fingerprints come back from the files
        result = store.commit(pd.concat([readings.iloc[3:6], changed]))
    assert (result.accepted, result.duplicates, result.rejected) == (0, 3, 3)
    assert all("conflicting duplicate" in d.reason and "is stored" in d.reason for d in result.conflicts)
    stored = read_store(root).sort_values(["machine_id", "seq"]).reset_index(drop=True)
    expected = readings.sort_values(["machine_id", "seq"]).reset_index(drop=True)
    assert np.allclose(stored["torque_nm"], expected["torque_nm"])  # the first values are kept
    letters = list(iter_dead_letters(root))
    assert [json.loads(letter["raw"])["torque_nm"] for letter in letters] == changed["torque_nm"].tolist()


def test_a_conflict_inside_one_batch_keeps_the_first_and_dead_letters_the_other(tmp_path, simulate_frame):
    readings = validate_frame(simulate_frame(machines=1, steps=3, seed=2), "sim").readings
    other = readings.iloc[[0]].assign(rotational_speed_rpm=readings["rotational_speed_rpm"].iloc[0] + 1)
    with ReadingStore(tmp_path / "store") as store:
        result = store.commit(pd.concat([readings, readings.iloc[[1]], other]))
    assert (result.accepted, result.duplicates, result.rejected) == (3, 1, 1)
    assert "came earlier in this batch" in result.conflicts[0].reason


def test_following_a_growing_file_then_stopping_cleanly(tmp_path, simulate_frame):
    frame = simulate_frame(machines=2, steps=100, seed=6)
    lines = to_json_lines(frame).splitlines(keepends=True)
    source = tmp_path / "live.jsonl"
    source.write_text("".join(lines[:50]) + lines[50][:10])  # ends in half a line
    stop = threading.Event()
    with ReadingStore(tmp_path / "store") as store:
        thread = threading.Thread(
            target=lambda: run_ingest(FileSource(source, follow=True, poll=0.02), store, stop), daemon=True
        )
        thread.start()
        with open(source, "a") as handle:
            handle.write(lines[50][10:] + "".join(lines[51:]))
        deadline = pd.Timestamp.now() + pd.Timedelta(seconds=20)
        while store.batch == 0 or len(store.index) < 200:
            assert pd.Timestamp.now() < deadline, "followed lines never arrived"
            threading.Event().wait(0.05)
        stop.set()
        thread.join(10)
        assert not thread.is_alive()
    assert len(read_store(tmp_path / "store")) == 200


def test_simulator_source_resumes_where_it_stopped(tmp_path, simulate_frame):
    spec = SimulationSpec(machines=3, steps=400, seed=8)
    stop = threading.Event()
    with ReadingStore(tmp_path / "store") as store:
        source = SimulatorSource(spec, batch_size=250)
        units = source.units(None, stop)
        first = next(units)  # take one batch, then "crash"
        store.commit(first.frame, [], {source.id: first.position})
    with ReadingStore(tmp_path / "store") as store:
        counts = run_ingest(SimulatorSource(spec, batch_size=250), store, stop)
    assert counts.accepted == 1200 - len(first.frame) and counts.duplicates == 0
    expected = simulate_frame(machines=3, steps=400, seed=8)
    pd.testing.assert_frame_equal(
        canonical(read_store(tmp_path / "store")), canonical(expected), check_dtype=False
    )


def test_file_replaced_by_a_shorter_one_is_refused(tmp_path, simulate_frame):
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(simulate_frame(machines=2, steps=20, seed=0)))
    ingest_file(source, tmp_path / "store")
    source.write_text("{}\n")
    with pytest.raises(SourceError, match="replaced or truncated"):
        ingest_file(source, tmp_path / "store")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ftp://x", "unknown source"),
        ("file:/definitely/absent.jsonl", "no such file"),
        ("http://127.0.0.1", "expected http://HOST:PORT"),
        ("mqtt://127.0.0.1:1883", "expected mqtt://HOST:PORT/TOPIC"),
    ],
)
def test_bad_sources_are_named(spec, message):
    with pytest.raises(SourceError, match=message):
        open_source(spec, client_id="x")


# --- parsing -----------------------------------------------------------------------------------
GOOD = {
    "machine_id": "M0001",
    "seq": 3,
    "timestamp": "2026-01-01T00:00:00Z",
    "product_type": "H",
    "air_temperature_k": 300.1,
    "process_temperature_k": 310.2,
    "rotational_speed_rpm": 1500,
    "torque_nm": 40.5,
    "tool_wear_min": 12,
    "machine_failure": 0,
}

MUTATIONS = [
    {"seq": -1},
    {"seq": 2**40},
    {"seq": 1.5},
    {"seq": "3"},
    {"seq": True},
    {"seq": None},
    {"machine_id": ""},
    {"machine_id": " "},
    {"machine_id": 5},
    {"machine_id": "x" * 129},
    {"timestamp": "2026-01-01"},
    {"timestamp": "2026-01-01T00:00:00+02:00"},
    {"timestamp": "2026-13-01T00:00:00Z"},
    {"timestamp": 0},
    {"product_type": "Q"},
    {"torque_nm": -1},
    {"torque_nm": 1e400},
    {"torque_nm": "40"},
    {"torque_nm": False},
    {"air_temperature_k": 1000},
    {"machine_failure": 2},
    {"machine_failure": None},
    {"osf": 0.0},
    {"extra": 1},
    {"tool_wear_min": 1e6},
    {"process_temperature_k": None},
]


@pytest.mark.parametrize(
    "mutation", MUTATIONS, ids=[next(iter(m)) + repr(next(iter(m.values())))[:12] for m in MUTATIONS]
)
def test_fast_and_slow_validation_agree(mutation):
    raw = json.dumps(GOOD | mutation).encode()
    parsed = parse_items([raw])
    assert len(parsed.readings) == 0 and len(parsed.dead_letters) == 1
    with pytest.raises(schema.ReadingError):
        schema.validate_reading(json.loads(raw))
    assert parsed.dead_letters[0].reason != "valid"
    assert next(iter(mutation)) in parsed.dead_letters[0].reason


def test_missing_fields_and_nan_are_explained():
    for field in schema.REQUIRED_FIELDS:
        raw = json.dumps({k: v for k, v in GOOD.items() if k != field}).encode()
        assert parse_items([raw]).dead_letters[0].reason == f"missing field(s): {field}"
    nan = json.dumps(GOOD | {"torque_nm": float("nan")}).encode()  # Python writes NaN, which JSON forbids
    assert "torque_nm: nan is not a finite number" in parse_items([nan]).dead_letters[0].reason
    assert explain(b"\xff\xfe").startswith("not UTF-8")
    assert explain(b"{").startswith("invalid JSON")


def test_good_readings_parse_to_contract_types():
    parsed = parse_items([json.dumps(GOOD).encode(), json.dumps(GOOD | {"seq": 4, "osf": 1}).encode()])
    frame = parsed.readings
    assert list(frame.columns) == list(schema.FIELD_NAMES)
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["osf"].tolist()[1] == 1 and pd.isna(frame["osf"].tolist()[0])
    assert (schema.check_frame(frame) == "").all()


def test_payload_splitting():
    assert split_payload(b'{"a": 1}') == [b'{"a": 1}']
    assert split_payload(b'[{"a": 1}, {"b": 2}]') == [b'{"a": 1}', b'{"b": 2}']
    assert split_payload(b"nope") is None and split_payload(b"3") is None


def _three_batches(tmp_path, simulate_frame) -> tuple[Path, pd.DataFrame]:
    frame = simulate_frame(machines=3, steps=100, seed=5)
    source = tmp_path / "in.jsonl"
    source.write_text(to_json_lines(frame))
    root = tmp_path / "store"
    ingest_file(source, root, batch_size=100)
    return root, frame


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "readings").rglob("part-*"))


@pytest.mark.reliability(
    "the store",
    "a lost, older or corrupt checkpoint",
    "refused, nothing deleted; repair restores every reading",
)
@pytest.mark.parametrize("loss", ["missing", "older", "corrupt"])
def test_a_lost_or_older_checkpoint_deletes_nothing_and_repair_brings_everything_back(
    tmp_path, simulate_frame, loss, record_reliability
):
    from predmaint.ingest.store import repair

    root, frame = _three_batches(tmp_path, simulate_frame)
    checkpoint = root / "_state" / "checkpoint.json"
    before = _files(root)
    if loss == "missing":
        checkpoint.unlink()
    elif loss == "older":
        checkpoint.write_text(json.dumps({"batch": 1, "positions": {}}))  # a restored old copy
    else:
        checkpoint.write_text('{"batch": [')
    for attempt in (lambda: ReadingStore(root).open(), lambda: read_store(root), lambda: store_stats(root)):
        with pytest.raises(StoreError, match="predmaint store repair"):
            attempt()
    assert _files(root) == before, "a file was deleted"
    report = repair(root)
    assert report["batch"] == 3 and report["quarantined"] == []
    stored = read_store(root)
    record_reliability("readings_lost", len(frame) - len(stored.merge(frame[["machine_id", "seq"]])))
    pd.testing.assert_frame_equal(canonical(stored), canonical(frame), check_dtype=False)
    with ReadingStore(root) as store:  # and ingestion goes on
        assert store.batch == 3 and len(store.index) == len(frame)


@pytest.mark.reliability(
    "the store", "a corrupt part file", "named; repair moves it to quarantine, bytes kept"
)
def test_a_corrupt_part_is_named_then_quarantined_by_repair(tmp_path, simulate_frame):
    from predmaint.ingest.store import repair

    root, frame = _three_batches(tmp_path, simulate_frame)
    import pyarrow.parquet as pq

    victim = next((root / "readings").rglob("part-*.parquet"))
    lost = pq.read_metadata(victim).num_rows
    victim.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(StoreError, match="cannot be read.*predmaint store repair"):
        ReadingStore(root).open()
    with pytest.raises(StoreError, match="cannot be read"):
        read_store(root)
    report = repair(root)
    (moved,) = report["quarantined"]
    assert Path(moved["file"]).read_bytes() == b"PAR1 this is not parquet PAR1" and moved["reason"].isascii()
    with ReadingStore(root):
        pass
    assert len(read_store(root)) == len(frame) - lost  # the rest readable, the bytes kept aside


def test_store_repair_from_the_cli(tmp_path, simulate_frame):
    import subprocess
    import sys

    root, frame = _three_batches(tmp_path, simulate_frame)
    (root / "_state" / "checkpoint.json").unlink()
    predmaint = str(Path(sys.executable).parent / "predmaint")
    stats = subprocess.run(
        [predmaint, "store", "stats", "--store", str(root)], capture_output=True, text=True
    )
    assert stats.returncode == 1 and "predmaint store repair" in stats.stderr
    fixed = subprocess.run(
        [predmaint, "store", "repair", "--store", str(root), "--json"], capture_output=True, text=True
    )
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["batch"] == 3
    absent = subprocess.run(
        [predmaint, "store", "repair", "--store", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert absent.returncode == 1 and "not a predmaint store" in absent.stderr


def test_keys_never_collide_and_the_index_refuses_past_its_machines(monkeypatch):
    from predmaint.ingest.store import KeyIndex

    index = KeyIndex()
    top = 2**40 - 1  # the largest seq the contract admits
    keys = index.encode(pd.Series(["A", "B", "A", "B"]), pd.Series([0, 0, top, top]))
    assert len(set(keys.tolist())) == 4 and (keys >= 0).all()
    monkeypatch.setattr(KeyIndex, "MAX_MACHINES", 3)
    index.encode(pd.Series(["C"]), pd.Series([1]))
    with pytest.raises(StoreError, match="more than 3 machines"):
        index.encode(pd.Series(["D"]), pd.Series([1]))


def test_dead_letters_are_compacted_and_none_is_lost_or_doubled(tmp_path, monkeypatch):
    root = tmp_path / "store"
    letters = [DeadLetter(f'{{"bad": {i}}}', f"reason {i}", f"item {i}") for i in range(40)]
    empty = parse_items([]).readings
    monkeypatch.setattr(store_module, "DEAD_LETTER_FILE_BYTES", 2_000)
    with ReadingStore(root, compact_after=3) as store:
        for i, letter in enumerate(letters):
            store.commit(empty, [letter])
            if i == 9:
                assert len(list((root / "dead_letter").iterdir())) < 5  # merged while running
    files = sorted(p.name for p in (root / "dead_letter").iterdir())
    assert 1 < len(files) < 10 and all(store_module._dead_range(root / "dead_letter" / f) for f in files)
    assert [d["reason"] for d in iter_dead_letters(root)] == [f"reason {i}" for i in range(40)]
    assert store_stats(root)["dead_letters"] == 40
    with ReadingStore(root, compact_after=3) as store:
        store.commit(empty, letters[:1])
    assert len(list(iter_dead_letters(root))) == 41


@pytest.mark.reliability(
    "the store", "a crash during dead-letter compaction", "survived; no dead letter doubled"
)
def test_a_crash_during_dead_letter_compaction_doubles_nothing(tmp_path):
    root = tmp_path / "store"
    empty = parse_items([]).readings
    with ReadingStore(root, compact_after=100) as store:
        for i in range(3):
            store.commit(empty, [DeadLetter("{}", f"reason {i}")])
        saved = {p.name: p.read_bytes() for p in (root / "dead_letter").iterdir()}
    (merged,) = (root / "dead_letter").iterdir()
    assert merged.name == "part-0000000001-0000000003.jsonl"
    for name, data in saved.items():  # as if the process died after writing the merged file
        (root / "dead_letter" / name).write_bytes(data)
    assert [d["reason"] for d in iter_dead_letters(root)] == ["reason 0", "reason 1", "reason 2"]
    ReadingStore(root).open().close()
    assert [p.name for p in (root / "dead_letter").iterdir()] == [merged.name]
