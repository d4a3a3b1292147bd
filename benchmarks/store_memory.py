"""Peak memory of opening a 10M-reading store: the writer's dedupe index, beside the one-table load.

The store is built through `ReadingStore.commit` (1,000 machines × 10,000 readings over ~100 days).
Each measurement runs in a fresh process and reports its peak resident set (VmHWM) beside
the resident set after imports. The peer is how the writer loaded its index before: the key
columns of every file read as one pandas table, then packed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from predmaint import schema
from predmaint.ingest.store import ReadingStore

MACHINES = 1_000
PER_MACHINE = 10_000
CHUNK_STEPS = 500  # readings per machine in one commit: 500,000 per commit

_CHILD = """
import json, sys, time
from pathlib import Path
from predmaint.ingest.store import KeyIndex, ReadingStore, read_store

def status_mib(field):  # VmHWM is this process's own peak; ru_maxrss would include a forking parent's
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

root, how = Path(sys.argv[1]), sys.argv[2]
baseline = status_mib("VmRSS")
started = time.perf_counter()
if how == "streamed":
    store = ReadingStore(root).open()
    keys, index_bytes = len(store.index), store.index.nbytes
    store._release()  # keep the store as it is: no compaction at close
else:
    table = read_store(root, ["machine_id", "seq"])
    index = KeyIndex()
    packed = index.encode(table["machine_id"], table["seq"])
    keys, index_bytes = len(packed), packed.nbytes
seconds = time.perf_counter() - started
peak = status_mib("VmHWM")
found = {"keys": keys, "baseline": baseline, "peak": peak, "index": index_bytes, "seconds": seconds}
print(json.dumps(found))
"""


def _chunk(start: int) -> pd.DataFrame:
    """Readings `start … start + CHUNK_STEPS` of every machine, valid under the contract."""
    rng = np.random.default_rng(start)
    steps = np.arange(start, start + CHUNK_STEPS)
    machines = np.repeat([f"M{m:05d}" for m in range(MACHINES)], CHUNK_STEPS)
    seqs = np.tile(steps, MACHINES)
    n = len(seqs)
    stamps = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(seqs * 15, unit="min")
    frame = {
        "machine_id": machines,
        "seq": seqs,
        "timestamp": pd.DatetimeIndex(stamps).astype("datetime64[us, UTC]"),
        "product_type": rng.choice(["L", "M", "H"], n),
        "air_temperature_k": rng.normal(300, 2, n).round(1),
        "process_temperature_k": rng.normal(310, 1.5, n).round(1),
        "rotational_speed_rpm": rng.normal(1540, 180, n).round(0),
        "torque_nm": rng.normal(40, 10, n).clip(3, 76).round(1),
        "tool_wear_min": (seqs % 250).astype(float),
    }
    for name in schema.LABEL_FIELDS:
        frame[name] = pd.array(np.zeros(n, dtype=np.int8), dtype="Int8")
    return pd.DataFrame(frame)[list(schema.FIELD_NAMES)]


def _build(root: Path) -> float:
    started = time.perf_counter()
    with ReadingStore(root) as store:
        for start in range(0, PER_MACHINE, CHUNK_STEPS):
            result = store.commit(_chunk(start))
            assert result.accepted == MACHINES * CHUNK_STEPS, result
            print(f"  built {store.batch * MACHINES * CHUNK_STEPS:,} readings", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def _measure(root: Path, how: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), how], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def run() -> tuple[str, list[str]]:
    """Measure and return (section title, markdown lines)."""
    total = MACHINES * PER_MACHINE
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        build = _build(root)
        streamed = _measure(root, "streamed")
        table = _measure(root, "one table")
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    assert streamed["keys"] == total == table["keys"], (streamed, table)
    rows = []
    for name, found in (
        ("writer opens the store (streamed index)", streamed),
        ("peer: keys as one table", table),
    ):
        growth = found["peak"] - found["baseline"]
        rows.append(
            f"| {name} | {found['peak']:,.0f} | {found['baseline']:,.0f} | {growth:,.0f} | "
            f"{growth * 2**20 / total:.0f} | {found['index'] / 2**20:,.0f} | {found['seconds']:.1f} |"
        )
    ratio = (table["peak"] - table["baseline"]) / (streamed["peak"] - streamed["baseline"])
    return "Store memory", [
        f"A store of {total:,} readings ({MACHINES:,} machines, {size / 2**20:,.0f} MiB of Parquet, built "
        f"through `ReadingStore.commit` in {build:.0f} s). Each row is a fresh process opening it. "
        "The index keeps 16 bytes a reading (packed key, fingerprint of the values for conflict checks).",
        "",
        "| how | peak RSS MiB | RSS after imports MiB | growth MiB | growth B/reading | index MiB "
        "| seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"The peer grows {ratio:.1f}× as much. The writer's growth is what an ingest pod needs per 10M "
        "stored readings on top of its imports (the chart's `ingest.resources`).",
        "",
        "Command: `make bench BENCH=store_memory`.",
    ]
