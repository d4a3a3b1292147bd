"""The durable sensor store: Hive-partitioned Parquet, dead letters and a checkpoint.

Layout under the store directory:

    readings/date=YYYY-MM-DD/part-<first>-<last>.parquet   committed readings
    dead_letter/part-<batch>.jsonl                          rejected inputs with their reasons
    dead_letter/part-<first>-<last>.jsonl                   the same, compacted
    _state/checkpoint.json                                  last committed batch, source positions
    _state/writer.lock                                      held by the one ingest process

Every commit writes its files under names carrying the batch number (temporary file, fsync,
rename), then the checkpoint the same way. The checkpoint is the commit point: on open, files
of the one batch after it (a crash between its files and its checkpoint) are moved aside to
`_state/quarantine/<UTC time>/`, and files already merged into a compacted file whose batch range
contains theirs are removed. Nothing else can be half-done, so `kill -9` at any moment followed
by a restart loses nothing and duplicates nothing.

A reading whose key is stored already is a duplicate when its values match (by fingerprint,
`KeyIndex`) and a conflict, kept as a dead letter, when they do not: the stored one stays.

Files of batches further ahead cannot come from a crash: the checkpoint was lost or restored
from an older copy. Then the store refuses to open (and to be read) and deletes nothing;
`repair()` (`predmaint store repair`) rebuilds the checkpoint from the files and quarantines
files that cannot be read.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from predmaint import schema
from predmaint.ingest.parse import DeadLetter, row_json

READINGS = "readings"
DEAD_LETTER = "dead_letter"
STATE = "_state"
_PART = re.compile(r"^part-(\d{10})-(\d{10})\.parquet$")
_DEAD = re.compile(r"^part-(\d{10})(?:-(\d{10}))?\.jsonl$")  # one batch, or a compacted range
DEAD_LETTER_FILE_BYTES = 64 << 20  # compacted dead-letter files grow to about this size
_SEQ_BITS = 40  # schema: seq < 2**40
log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """The store cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class CommitResult:
    """What one commit did."""

    batch: int
    accepted: int
    duplicates: int
    rejected: int
    conflicts: tuple[DeadLetter, ...] = ()
    """Readings whose key was stored (or came earlier in the batch) with other values; in `rejected`."""


@dataclass
class Counts:
    """Running totals of an ingestion run."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0

    def add(self, result: CommitResult) -> None:
        """Add one commit's figures."""
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.rejected += result.rejected
        self.batches += 1


class KeyIndex:
    """The stored `(machine_id, seq)` keys, each with a fingerprint of its reading's values.

    Keys are packed into one int64 (machine code << 40 | seq) and kept in sorted arrays beside
    their 64-bit fingerprints: 16 bytes a reading, queried in bulk by binary search. New keys go
    to a small sorted level first, merged into the large one every `RECENT_LIMIT` keys, so a
    commit never copies the whole index. Codes are dense (0, 1, 2, … per machine) and seq < 2**40
    (the contract), so two keys never share a number; past MAX_MACHINES machines the index
    refuses rather than let codes overflow.
    """

    MAX_MACHINES = 1 << (63 - _SEQ_BITS)
    RECENT_LIMIT = 1 << 16

    def __init__(self) -> None:
        """Start empty."""
        self._codes: dict[str, int] = {}
        self._levels = [_sorted_keys(), _sorted_keys()]  # [large, recent]

    def __len__(self) -> int:
        """Number of keys."""
        return sum(len(keys) for keys, _ in self._levels)

    @property
    def nbytes(self) -> int:
        """Bytes the key and fingerprint arrays take (machine names not counted)."""
        return sum(keys.nbytes + prints.nbytes for keys, prints in self._levels)

    def encode(self, machine_ids: pd.Series, seqs: pd.Series) -> np.ndarray:
        """Packed keys of a batch (new machines get new codes)."""
        codes = machine_ids.map(self._codes)
        if codes.isna().any():
            for machine in pd.unique(machine_ids[codes.isna()]):
                if len(self._codes) >= self.MAX_MACHINES:
                    raise StoreError(
                        f"more than {self.MAX_MACHINES:,} machines in one store: the key index cannot "
                        "tell them apart; split the fleet over several stores"
                    )
                self._codes[machine] = len(self._codes)
            codes = machine_ids.map(self._codes)
        return (codes.to_numpy(np.int64) << _SEQ_BITS) | seqs.to_numpy(np.int64)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which keys are stored, and the fingerprint stored with each (0 where none)."""
        found = np.zeros(len(keys), dtype=bool)
        prints = np.zeros(len(keys), dtype=np.uint64)
        for stored, stored_prints in self._levels:
            if len(stored):
                at = np.searchsorted(stored, keys).clip(max=len(stored) - 1)
                hit = stored[at] == keys
                found |= hit
                prints[hit] = stored_prints[at[hit]]
        return found, prints

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which keys are already stored."""
        return self.lookup(keys)[0]

    def add(self, keys: np.ndarray, prints: np.ndarray) -> None:
        """Remember new keys (not stored yet, each once) with their readings' fingerprints."""
        large, recent = self._levels
        recent = _merge(recent, (keys, prints))
        if len(recent[0]) > self.RECENT_LIMIT:
            large, recent = _merge(large, recent), _sorted_keys()
        self._levels = [large, recent]


def _sorted_keys() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)


def _merge(
    into: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys and their fingerprints with `new` (in any order) inserted in place."""
    order = np.argsort(new[0], kind="stable")
    keys, prints = new[0][order], np.asarray(new[1], dtype=np.uint64)[order]
    at = np.searchsorted(into[0], keys)
    return np.insert(into[0], at, keys), np.insert(into[1], at, prints)


_KEY_FIELDS = ("machine_id", "seq")
_PRIME = np.uint64(1_099_511_628_211)


def fingerprints(table: pa.Table) -> np.ndarray:
    """A 64-bit hash per reading of every contract field but its key, stable across processes.

    `table` is in the store's Arrow schema, so a reading hashes the same whether it comes from a
    request, a file, or a part read back from disk.
    """
    combined = np.zeros(len(table), dtype=np.uint64)
    for spec in schema.FIELDS:
        if spec.name in _KEY_FIELDS:
            continue
        column = table.column(spec.name)
        if spec.kind in ("str", "category"):
            values = np.asarray(column.to_pandas(), dtype=object)
        elif spec.kind == "float":
            values = pc.fill_null(pc.cast(column, pa.float64()), np.nan).to_numpy().view(np.uint64)
        else:  # integers, flags and timestamps; -1 stands for a missing (optional) flag
            values = pc.fill_null(pc.cast(column, pa.int64()), -1).to_numpy().view(np.uint64)
        combined = combined * _PRIME ^ pd.util.hash_array(values, categorize=False)
    return combined


@dataclass
class _Checkpoint:
    batch: int = 0
    positions: dict[str, Any] = field(default_factory=dict)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that it is either absent or complete, even across a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _conflict(reading: dict[str, Any], stored: bool) -> DeadLetter:
    """The dead letter of a reading whose key is taken by one with different values (which stays)."""
    where = "is stored" if stored else "came earlier in this batch"
    machine, seq = schema.shown_name(reading["machine_id"]), reading["seq"]
    reason = f"conflicting duplicate: machine {machine} seq {seq} {where} with other values; that one is kept"
    return DeadLetter(row_json(reading), reason)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _part_range(path: Path) -> tuple[int, int] | None:
    match = _PART.match(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def committed_files(root: Path, batch: int | None = None) -> list[Path]:
    """Parquet files that hold committed readings: the store's consistent view.

    Files of uncommitted batches and files already merged into a compacted file are left out;
    the writer deletes them when it next opens the store.
    """
    if batch is None:
        batch = _read_checkpoint(root).batch
    keep: list[Path] = []
    for partition in sorted((root / READINGS).glob("date=*")):
        keep += _outermost([(p, r) for p in partition.iterdir() if (r := _part_range(p)) and r[1] <= batch])
    return sorted(keep)


def _outermost(parts: list[tuple[Path, tuple[int, int]]]) -> list[Path]:
    """Files whose batch range no other file's range contains (the others are merged already)."""
    return [
        path
        for path, (first, last) in parts
        if not any(lo <= first and last <= hi and (lo, hi) != (first, last) for _, (lo, hi) in parts)
    ]


def _is_range(path: Path) -> bool:
    found = _dead_range(path)
    return found is not None and found[0] < found[1]


def _dead_range(path: Path) -> tuple[int, int] | None:
    match = _DEAD.match(path.name)
    if not match:
        return None
    first = int(match.group(1))
    return first, int(match.group(2) or first)


def dead_letter_files(root: Path, batch: int | None = None) -> list[Path]:
    """Dead-letter files of committed batches, oldest first (files merged into others left out)."""
    if batch is None:
        batch = _read_checkpoint(root).batch
    folder = root / DEAD_LETTER
    if not folder.is_dir():
        return []
    found = [(p, r) for p in folder.iterdir() if (r := _dead_range(p)) and r[1] <= batch]
    return sorted(_outermost(found), key=_dead_range)


def _lock_writer(root: Path) -> Any:
    """The open, exclusively locked `_state/writer.lock` of a store (held while writing it)."""
    handle = open(root / STATE / "writer.lock", "a+")  # noqa: SIM115 - the caller holds it open
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"{root} is being written by another ingest process; stop it first") from None
    return handle


def _parse_checkpoint(root: Path) -> _Checkpoint:
    """The checkpoint as written (batch 0 when absent); a StoreError when it cannot be parsed."""
    path = root / STATE / "checkpoint.json"
    if not path.exists():
        return _Checkpoint()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _Checkpoint(int(data["batch"]), dict(data.get("positions", {})))
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise StoreError(
            f"{path} is corrupt ({exc}); nothing was deleted: `predmaint store repair --store {root}` "
            "rebuilds it from the files"
        ) from None


def _read_checkpoint(root: Path) -> _Checkpoint:
    """The checkpoint, refused when the files show it is lost or older than they are."""
    checkpoint = _parse_checkpoint(root)
    newest = newest_batch_on_disk(root)
    if newest > checkpoint.batch + 1:
        raise StoreError(
            f"{root}: the checkpoint says batch {checkpoint.batch} but files of batches up to {newest} "
            "are here: it was lost or restored from an older copy. Nothing was deleted; "
            f"`predmaint store repair --store {root}` rebuilds it from the files"
        )
    return checkpoint


def newest_batch_on_disk(root: Path) -> int:
    """The highest batch number any reading or dead-letter file of the store carries."""
    newest = 0
    for partition in (root / READINGS).glob("date=*"):
        for path in partition.iterdir():
            if found := _part_range(path):
                newest = max(newest, found[1])
    if (root / DEAD_LETTER).is_dir():
        for path in (root / DEAD_LETTER).iterdir():
            if found := _dead_range(path):
                newest = max(newest, found[1])
    return newest


def _quarantine(root: Path, path: Path, stamp: str) -> Path:
    """Move a file out of the store's view, keeping its place under `_state/quarantine/<stamp>/`."""
    target = root / STATE / "quarantine" / stamp / path.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def repair(root: str | Path) -> dict[str, Any]:
    """Rebuild the checkpoint from the files; move unreadable files to quarantine. Deletes nothing.

    Source positions of the old checkpoint are kept when it can be read: sources resume from
    there and the store drops what it already holds.
    """
    root = Path(root)
    if not (root / READINGS).is_dir():
        raise StoreError(f"{root} is not a predmaint store (no {READINGS}/ inside)")
    with _lock_writer(root):
        batch = newest_batch_on_disk(root)  # before quarantine: batch numbers never go back
        stamp = _stamp()
        quarantined = []
        for partition in sorted((root / READINGS).glob("date=*")):
            for path in sorted(partition.iterdir()):
                if _part_range(path) and (problem := _unreadable(path)):
                    quarantined.append({"file": str(_quarantine(root, path, stamp)), "reason": problem})
        try:
            old = _parse_checkpoint(root)
        except (StoreError, OSError):
            old = _Checkpoint()
        batch = max(batch, old.batch)
        checkpoint = {"batch": batch, "positions": old.positions}
        atomic_write(root / STATE / "checkpoint.json", json.dumps(checkpoint).encode())
    log.warning(
        "store %s repaired: checkpoint at batch %d, %d file(s) quarantined", root, batch, len(quarantined)
    )
    return {"store": str(root), "batch": batch, "quarantined": quarantined}


def _unreadable(path: Path) -> str | None:
    """Why a part file cannot be read as readings, or None."""
    try:
        pq.read_table(path).select(list(schema.FIELD_NAMES)).cast(schema.arrow_schema())
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        return str(exc)[:300].encode("ascii", "backslashreplace").decode()
    return None


def install_id(root: str | Path) -> str:
    """A random id of this store, made once (`_state/install-id`): MQTT session ids differ per install."""
    path = Path(root) / STATE / "install-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x") as handle:  # two first starts at once: one writes, the other reads
            handle.write(secrets.token_hex(8) + "\n")
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot use {Path(root)} as a store: {exc.strerror or exc}") from None
    return path.read_text().strip()


def open_dataset(root: Path) -> ds.Dataset:
    """The committed readings as a pyarrow dataset (with the `date` partition column)."""
    files = [str(p) for p in committed_files(root)]
    partitioning = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    return ds.dataset(
        files,
        schema=schema.arrow_schema(),
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(root / READINGS),
    )


def read_store(root: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """All committed readings, in contract columns."""
    try:
        table = open_dataset(root).to_table(columns=columns or list(schema.FIELD_NAMES))
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable_store(root, exc) from None
    return table.to_pandas()


def _unreadable_store(root: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"{root}: a reading file cannot be read ({str(exc)[:200]}); nothing was "
        f"deleted: `predmaint store repair --store {root}` moves unreadable files to quarantine"
    )


class ReadingStore:
    """The single writer of a store directory."""

    def __init__(self, root: str | Path, *, compact_after: int = 8) -> None:
        """Name the store; nothing is touched until `open()`."""
        self.root = Path(root)
        self.compact_after = compact_after
        self.index = KeyIndex()
        self._checkpoint = _Checkpoint()
        self._lock_handle: Any = None
        self._touched: set[Path] = set()

    # --- opening and recovery ----------------------------------------------------------------
    def open(self) -> ReadingStore:
        """Lock the store, finish or undo whatever a crash interrupted, and load the key index."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file; name a directory for the store")
        try:
            (self.root / STATE).mkdir(parents=True, exist_ok=True)
            (self.root / READINGS).mkdir(exist_ok=True)
            (self.root / DEAD_LETTER).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use {self.root} as a store: {exc.strerror or exc}") from None
        self._lock_handle = _lock_writer(self.root)
        try:
            self._checkpoint = _read_checkpoint(self.root)
            self._recover()
            self._load_index()
        except BaseException:
            self._release()
            raise
        return self

    def _load_index(self) -> None:
        """Read every committed reading's key and fingerprint, one file slice at a time.

        File by file, without read-ahead: the index grows by its 16 bytes a reading while the
        slices in flight stay small (docs/BENCHMARKS.md, "Store memory").
        """
        columns, arrow = list(schema.FIELD_NAMES), schema.arrow_schema()
        try:
            for path in committed_files(self.root, self._checkpoint.batch):
                for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16, columns=columns):
                    table = pa.Table.from_batches([batch]).cast(arrow)
                    machines, seqs = table.column("machine_id").to_pandas(), table.column("seq").to_pandas()
                    self.index.add(self.index.encode(machines, seqs), fingerprints(table))
        except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
            raise _unreadable_store(self.root, exc) from None

    def _recover(self) -> None:
        """Undo the one batch a crash may have left after the checkpoint (moved aside, not deleted)."""
        batch = self._checkpoint.batch
        stamp = _stamp()
        for tmp in self.root.rglob(".*.tmp"):
            if "quarantine" not in tmp.relative_to(self.root).parts[:2]:
                tmp.unlink()
        keep = set(committed_files(self.root, batch))
        for partition in (self.root / READINGS).glob("date=*"):
            for path in partition.iterdir():
                found = _part_range(path)
                if found and found[1] > batch:
                    log.warning(
                        "store: batch %d was not committed; %s", found[1], _quarantine(self.root, path, stamp)
                    )
                elif found and path not in keep:
                    path.unlink()  # merged into a compacted file already
            if not any(partition.iterdir()):
                partition.rmdir()
        keep_dead = set(dead_letter_files(self.root, batch))
        for path in (self.root / DEAD_LETTER).iterdir():
            found = _dead_range(path)
            if found and found[1] > batch:
                _quarantine(self.root, path, stamp)
            elif found and path not in keep_dead:
                path.unlink()  # merged into a compacted file already

    def close(self) -> None:
        """Compact what this run wrote and release the lock."""
        if self._lock_handle is None:
            return
        try:
            with store_commit_lock(self.root):
                for partition in sorted(self._touched):
                    self._compact(partition, everything=True)
                self._compact_dead_letters(everything=True)
        except OSError as exc:  # every batch is committed; the next run merges what is left
            log.warning("compaction at close failed (%s); the files stay as they are", exc)
        finally:
            self._release()

    def _release(self) -> None:
        fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
        self._lock_handle.close()
        self._lock_handle = None

    def __enter__(self) -> ReadingStore:
        """Open on entry."""
        return self.open()

    def __exit__(self, *exc: object) -> None:
        """Close on exit."""
        self.close()

    # --- committing --------------------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Number of the last committed batch."""
        return self._checkpoint.batch

    def position(self, source: str) -> Any:
        """Where a source stopped at the last commit (None when it never committed here)."""
        return self._checkpoint.positions.get(source)

    def commit(
        self,
        readings: pd.DataFrame,
        dead_letters: Iterable[DeadLetter] = (),
        positions: dict[str, Any] | None = None,
    ) -> CommitResult:
        """Store the new readings and dead letters of one batch and advance source positions.

        Safe to retry after an error: nothing counts until the checkpoint is written.
        """
        keys = self.index.encode(readings["machine_id"], readings["seq"])
        table = pa.Table.from_pandas(readings, schema=schema.arrow_schema(), preserve_index=False)
        prints = fingerprints(table)
        stored, stored_prints = self.index.lookup(keys)
        repeated = pd.Series(keys).duplicated().to_numpy()
        first_prints = (
            pd.Series(prints).groupby(keys).transform("first").to_numpy(np.uint64)
            if repeated.any()
            else prints
        )
        conflict = (stored & (stored_prints != prints)) | (~stored & repeated & (first_prints != prints))
        conflicts = tuple(
            _conflict(row, bool(earlier))
            for row, earlier in zip(readings[conflict].to_dict("records"), stored[conflict], strict=True)
        )
        dead = [*dead_letters, *conflicts]
        fresh = ~stored & ~repeated
        new = readings[fresh]
        new_keys = keys[fresh]
        with store_commit_lock(self.root):
            batch = self._checkpoint.batch + 1
            partitions: list[Path] = []
            if len(new):
                new_table = table.filter(pa.array(fresh))  # rows in the order of `new`
                dates = new["timestamp"].dt.strftime("%Y-%m-%d")
                for date, rows in sorted(new.groupby(dates).indices.items()):
                    partition = self.root / READINGS / f"date={date}"
                    part = _parquet_bytes(new_table.take(rows))
                    atomic_write(partition / f"part-{batch:010d}-{batch:010d}.parquet", part)
                    partitions.append(partition)
            if dead:
                lines = "".join(json.dumps(d.as_dict()) + "\n" for d in dead)
                atomic_write(self.root / DEAD_LETTER / f"part-{batch:010d}.jsonl", lines.encode("ascii"))
            checkpoint = _Checkpoint(batch, {**self._checkpoint.positions, **(positions or {})})
            atomic_write(
                self.root / STATE / "checkpoint.json",
                json.dumps({"batch": checkpoint.batch, "positions": checkpoint.positions}, indent=1).encode(),
            )
            self._checkpoint = checkpoint
            self.index.add(new_keys, prints[fresh])
            try:  # the batch is committed; a failed merge is retried at the next one
                for partition in partitions:
                    self._touched.add(partition)
                    self._compact(partition, everything=False)
                if dead:
                    self._compact_dead_letters(everything=False)
            except OSError as exc:
                log.warning("compaction after batch %d failed (%s); will retry", batch, exc)
        duplicates = int(((stored | repeated) & ~conflict).sum())
        return CommitResult(batch, len(new), duplicates, len(dead), conflicts)

    # --- compaction --------------------------------------------------------------------------
    def _compact(self, partition: Path, *, everything: bool) -> None:
        """Merge a partition's files into one: small ones every few batches, all of them at close."""
        if not partition.is_dir():
            return
        parts = sorted((r, p) for p in partition.iterdir() if (r := _part_range(p)))
        candidates = parts if everything else [(r, p) for r, p in parts if r[0] == r[1]]
        if len(candidates) < (2 if everything else self.compact_after):
            return
        first, last = candidates[0][0][0], candidates[-1][0][1]
        tables = [pq.read_table(p, schema=schema.arrow_schema()) for _, p in candidates]
        merged = pa.concat_tables(tables).sort_by([("timestamp", "ascending"), ("machine_id", "ascending")])
        atomic_write(partition / f"part-{first:010d}-{last:010d}.parquet", _parquet_bytes(merged))
        for (_, _), path in candidates:
            path.unlink()
        _fsync_dir(partition)

    def _compact_dead_letters(self, *, everything: bool) -> None:
        """Merge dead-letter files: single batches every few, then small merged ones up to a size.

        Trailing single-batch files go into one range file (`compact_after` of them, or any two
        at close). Once `compact_after` range files are small (under DEAD_LETTER_FILE_BYTES /
        compact_after), runs of them are merged up to DEAD_LETTER_FILE_BYTES, so a line is
        rewritten a few times at most and a file that has grown is never rewritten. Sources are
        removed only after the merged file is durable; a crash in between leaves them inside the
        merged file's range, where readers skip them and the next open removes them.
        """
        files = dead_letter_files(self.root, self.batch)
        trailing = itertools.takewhile(lambda path: not _is_range(path), reversed(files))
        singles = list(trailing)[::-1]
        if len(singles) >= (2 if everything else self.compact_after):
            self._merge_dead(singles)
            files = dead_letter_files(self.root, self.batch)
        small = DEAD_LETTER_FILE_BYTES // self.compact_after
        merged = [(p, size) for p in files if _is_range(p) and (size := p.stat().st_size) < small]
        if len(merged) < self.compact_after:
            return
        run: list[Path] = []
        total = 0
        for path, size in merged:
            if run and total + size > DEAD_LETTER_FILE_BYTES:
                self._merge_dead(run)
                run, total = [], 0
            run.append(path)
            total += size
        self._merge_dead(run)

    def _merge_dead(self, files: list[Path]) -> None:
        if len(files) < 2:
            return
        first, last = _dead_range(files[0])[0], _dead_range(files[-1])[1]
        data = b"".join(path.read_bytes() for path in files)
        atomic_write(self.root / DEAD_LETTER / f"part-{first:010d}-{last:010d}.jsonl", data)
        for path in files:
            path.unlink()
        _fsync_dir(self.root / DEAD_LETTER)


def iter_dead_letters(root: str | Path, batch: int | None = None) -> Iterator[dict[str, Any]]:
    """Dead letters of committed batches, oldest first."""
    root = Path(root)
    if batch is None:
        batch = _read_checkpoint(root).batch
    for path in dead_letter_files(root, batch):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)


@contextmanager
def store_commit_lock(root: Path) -> Iterator[None]:
    """Exclusive while files change: held by each commit and by a snapshot's `dvc add`."""
    path = Path(root) / STATE / "commit.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store_stats(root: str | Path) -> dict[str, Any]:
    """Readings, machines, dead letters and time span of a store (its committed view)."""
    root = Path(root)
    if not (root / READINGS).is_dir():
        raise StoreError(f"{root} is not a predmaint store (no {READINGS}/ inside); ingest into it first")
    table = open_dataset(root).to_table(columns=["machine_id", "timestamp"])
    stamps = table.column("timestamp")
    first = pc.min(stamps).as_py() if len(table) else None
    last = pc.max(stamps).as_py() if len(table) else None
    return {
        "store": str(root),
        "readings": len(table),
        "machines": len(pc.unique(table.column("machine_id"))),
        "dead_letters": sum(1 for _ in iter_dead_letters(root)),
        "first_timestamp": first.isoformat().replace("+00:00", "Z") if first else None,
        "last_timestamp": last.isoformat().replace("+00:00", "Z") if last else None,
        "files": len(committed_files(root)),
        "batches": _read_checkpoint(root).batch,
    }
