"""The prediction log: every answer of the service, kept for drift checks and the fleet view.

A request only appends its records to an in-memory buffer; a background thread writes the buffer
every `flush_seconds` (and at exit). Each process writes its own files, named by host and pid, so
gunicorn workers never share one. Files are partitioned by UTC date of the prediction:

- `jsonl` (default): `<dir>/date=YYYY-MM-DD/predictions-<host>-<pid>.jsonl`, appended at each
  flush and readable at once; a line torn by a crash is skipped when the log is read.
- `parquet`: `<dir>/date=YYYY-MM-DD/part-<host>-<pid>-<n>.parquet`, one file per flush, written
  atomically; fewer bytes, more files (use a longer flush interval).

A failed write keeps the records for the next flush; only when more than `max_buffered`
records wait are the oldest dropped, and the drop is counted and logged.

Labels a client sends with a reading (`machine_failure`, the failure modes) are never logged:
anyone who can call `/predict` could otherwise fake a performance drop and start retraining.
The drift check takes labels from the sensor store, which only authenticated ingestion writes.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from predmaint.ingest.parse import column_list
from predmaint.ingest.store import atomic_write
from predmaint.schema import LABEL_FIELDS

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "parquet")
_DATE_FOLDER = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")

_ENCODER = msgspec.json.Encoder()
_LINE_DECODER = msgspec.json.Decoder(dict[str, Any])
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


class PredictionLog:
    """Buffered, per-process writer of prediction records."""

    def __init__(
        self,
        directory: Path,
        fmt: str = "jsonl",
        flush_seconds: float = 2.0,
        max_buffered: int = 100_000,
        on_flush: Callable[[int, int, int], None] | None = None,
        retention_days: int | None = None,
    ) -> None:
        """Configure the log; nothing is created until the first flush with records.

        Args:
            directory: root of the log.
            fmt: `jsonl` or `parquet`.
            flush_seconds: longest a record waits in memory.
            max_buffered: records kept in memory while writes fail; older ones are dropped beyond.
            on_flush: called after each flush attempt with (written, failed, dropped) record counts.
            retention_days: date folders older than this many days are removed (at most hourly).
        """
        if fmt not in FORMATS:
            raise ValueError(f"prediction log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.directory = Path(directory)
        self.fmt = fmt
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self.on_flush = on_flush
        self.retention_days = retention_days
        self._pruned_at = 0.0
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._parts = 0
        self.written = self.failed = self.dropped = 0
        self._dropped_unreported = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Queue records for writing (cheap: the request path calls this)."""
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._buffer.extend(records)
            self._trim()  # writes fall behind: keep memory bounded, count what is dropped

    def _trim(self) -> None:
        """Drop the oldest buffered records beyond `max_buffered` (the caller holds the lock)."""
        excess = len(self._buffer) - self.max_buffered
        if excess > 0:
            del self._buffer[:excess]
            self.dropped += excess
            self._dropped_unreported += excess

    def _start(self) -> None:
        # Runs once per process: after a fork the parent's thread and buffer are not ours.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._buffer = []
            self._stop = threading.Event()
            threading.Thread(target=self._loop, name="prediction-log", daemon=True).start()
            atexit.register(self.close)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer thread must outlive any one failure
                log.exception("prediction log: flush failed; retrying at the next interval")

    def flush(self) -> int:
        """Write what is buffered; returns the number of records written."""
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                self._write(batch)
            except OSError as exc:  # the disk: keep the records for the next flush
                with self._lock:
                    self._buffer = batch + self._buffer
                    self._trim()
                self.failed += len(batch)
                log.warning(
                    "prediction log: cannot write %d record(s) to %s: %s", len(batch), self.directory, exc
                )
                self._report(0, len(batch))
                return 0
            except Exception:  # noqa: BLE001 - records no writer takes: retrying cannot help
                self.failed += len(batch)
                self.dropped += len(batch)
                self._dropped_unreported += len(batch)
                log.exception("prediction log: %d record(s) cannot be written; dropped", len(batch))
                self._report(0, len(batch))
                return 0
            self.written += len(batch)
            self._report(len(batch), 0)
            if self.retention_days is not None and time.monotonic() - self._pruned_at > 3600:
                self._pruned_at = time.monotonic()
                self.prune(datetime.now(UTC))
            return len(batch)

    def prune(self, now: datetime) -> list[str]:
        """Remove the date folders older than `retention_days` before `now`; their names."""
        if self.retention_days is None or not self.directory.is_dir():
            return []
        oldest = (now - timedelta(days=self.retention_days)).strftime("date=%Y-%m-%d")
        removed = []
        for folder in sorted(self.directory.glob("date=*")):
            if folder.is_dir() and _DATE_FOLDER.match(folder.name) and folder.name < oldest:
                shutil.rmtree(folder, ignore_errors=True)  # another worker may prune it too
                removed.append(folder.name)
        if removed:
            log.info(
                "prediction log: removed %d date folder(s) past %d days", len(removed), self.retention_days
            )
        return removed

    def _report(self, written: int, failed: int) -> None:
        """Tell `on_flush` what this flush did, with every drop since the last report."""
        with self._lock:
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        if self.on_flush:
            self.on_flush(written, failed, dropped)

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        self._stop.set()
        self.flush()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_date: dict[str, list[dict[str, Any]]] = {}
        for record in batch:
            by_date.setdefault(record["logged_at"][:10], []).append(record)
        stem = f"{socket.gethostname()}-{os.getpid()}"
        for date, records in by_date.items():
            folder = self.directory / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            if self.fmt == "jsonl":
                data = b"\n".join(_ENCODER.encode(r) for r in records) + b"\n"
                with open(folder / f"predictions-{stem}.jsonl", "ab") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            else:
                self._parts += 1
                sink = pa.BufferOutputStream()
                pq.write_table(pa.Table.from_pylist(records), sink, compression="zstd")
                atomic_write(folder / f"part-{stem}-{self._parts:06d}.parquet", sink.getvalue().to_pybytes())


def now_iso() -> str:
    """The current UTC time as the log writes it (ISO-8601, microseconds, Z)."""
    return datetime.now(UTC).strftime(_STAMP)


def read_predictions(
    directory: Path, since: datetime | None = None, newest: int | None = None
) -> pd.DataFrame:
    """Logged predictions (both formats), oldest first; torn or foreign lines are skipped.

    With `newest`, only the newest date partitions that hold that many records are read (and
    the newest `newest` records returned): a drift window or the fleet view costs its own size,
    not the size of the whole log.

    Returns:
        One row per prediction with the reading's fields, the outputs and `logged_at`; an empty
        frame when the log does not exist yet.
    """
    directory = Path(directory)
    frames: list[pd.DataFrame] = []
    rows: list[dict[str, Any]] = []
    skipped = 0
    count = 0
    partitions = sorted(directory.glob("date=*"), reverse=True) if directory.is_dir() else []
    for partition in partitions:
        if newest is not None and count >= newest:
            break
        for path in sorted(partition.glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    rows.append(_LINE_DECODER.decode(line))
                    count += 1
                except msgspec.DecodeError:
                    skipped += 1
        for path in sorted(partition.glob("*.parquet")):
            frames.append(pq.read_table(path).to_pandas())
            count += len(frames[-1])
    if skipped:
        log.warning("prediction log %s: skipped %d unreadable line(s)", directory, skipped)
    if rows:
        frames.append(pd.DataFrame(rows))
    if not frames:
        return pd.DataFrame({"logged_at": pd.Series([], dtype="datetime64[us, UTC]")})
    frame = pd.concat(frames, ignore_index=True)
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True, format="ISO8601")
    if "timestamp" in frame.columns:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    if since is not None:
        frame = frame[frame["logged_at"] >= since]
    frame = frame.sort_values("logged_at", kind="stable")
    if newest is not None:
        frame = frame.tail(newest)
    return frame.reset_index(drop=True)


def latest_per_machine(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest prediction of each machine (by reading time, then sequence), riskiest first."""
    if frame.empty or "machine_id" not in frame.columns:
        return frame.iloc[0:0]
    newest = frame.sort_values(["timestamp", "seq", "logged_at"], kind="stable").groupby("machine_id").tail(1)
    return newest.sort_values("failure_probability", ascending=False, kind="stable").reset_index(drop=True)


def records(readings: Any, answers: list[dict[str, Any]], logged_at: str) -> list[dict[str, Any]]:
    """Log records: each reading's fields (never its labels) next to the answer it got.

    `readings` is a contract DataFrame or the columns of `ingest.parse.parse_columns`.
    """
    stamps = readings["timestamp"]
    if hasattr(stamps, "dt"):
        stamps = stamps.dt.strftime(_STAMP).tolist()
    else:
        stamps = [s.strftime(_STAMP) if isinstance(s, datetime) else str(s) for s in stamps]
    columns = {
        name: column_list(readings[name])
        for name in readings
        if name != "timestamp" and name not in LABEL_FIELDS
    }
    columns["timestamp"] = stamps
    out = []
    for i, answer in enumerate(answers):
        record: dict[str, Any] = {"logged_at": logged_at}
        for name, values in columns.items():
            value = values[i]
            if value is not None and value is not pd.NA:
                record[name] = value
        record["failure_probability"] = answer["failure_probability"]
        record["failure"] = answer["failure"]
        for mode, probability in answer["failure_modes"].items():
            record[f"p_{mode}"] = probability
        if "top_features" in answer:
            record["top_features"] = _ENCODER.encode(answer["top_features"]).decode()
        record["model_version"] = answer["model_version"]
        out.append(record)
    return out
