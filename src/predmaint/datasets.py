"""Reading and writing tables of readings, and the AI4I 2020 CSV mapped onto the contract."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from predmaint import schema

Format = Literal["jsonl", "parquet", "csv"]
STDOUT = "-"
_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}

AI4I_COLUMNS: dict[str, str] = {
    "UDI": "seq",
    "Type": "product_type",
    "Air temperature [K]": "air_temperature_k",
    "Process temperature [K]": "process_temperature_k",
    "Rotational speed [rpm]": "rotational_speed_rpm",
    "Torque [Nm]": "torque_nm",
    "Tool wear [min]": "tool_wear_min",
    "Machine failure": "machine_failure",
    "TWF": "twf",
    "HDF": "hdf",
    "PWF": "pwf",
    "OSF": "osf",
    "RNF": "rnf",
}
AI4I_MACHINE_ID = "ai4i"
AI4I_START = datetime(2020, 1, 1, tzinfo=UTC)
AI4I_FILE = Path(__file__).resolve().parent / "data" / "ai4i2020" / "ai4i2020.csv"
"""The real file, shipped inside the package (CC BY 4.0, see its README.md beside it)."""


class DataError(ValueError):
    """A data file cannot be read or written; the message names the file and the fix."""


def file_format(path: str | Path, *, writing: bool = False) -> Format:
    """Format implied by a path's extension (`-` is JSONL on stdout)."""
    if str(path) == STDOUT:
        return "jsonl"
    fmt = _SUFFIXES.get(Path(path).suffix.lower())
    allowed = ("jsonl", "parquet") if writing else ("jsonl", "parquet", "csv")
    if fmt not in allowed:
        names = ", ".join(s for s, f in _SUFFIXES.items() if f in allowed)
        raise DataError(f"{path}: unsupported file extension; use one of {names}")
    return fmt


def to_json_lines(frame: pd.DataFrame) -> str:
    """Render readings as JSON lines with UTC ISO-8601 timestamps."""
    if frame.empty:
        return ""
    out = frame
    if isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype):
        values = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        whole_seconds = bool((values.astype(np.int64) % 1_000_000 == 0).all())
        text = np.datetime_as_string(values, unit="s" if whole_seconds else "us")
        out = frame.assign(timestamp=np.char.add(text.astype(str), "Z"))
    return out.to_json(orient="records", lines=True, force_ascii=False)


class ReadingsWriter:
    """Writes chunks of readings to JSONL or Parquet, or JSONL to stdout.

    Files are written to a temporary name and renamed into place on success, so a failed or
    interrupted run never leaves a truncated file. With `live=True` lines go straight to the
    target and are flushed one chunk at a time, for readers that tail the file.
    """

    def __init__(self, out: str | Path, *, live: bool = False) -> None:
        """Open the target; raises `DataError` when it cannot be written."""
        self.out = str(out)
        self.format = file_format(out, writing=True)
        self.live = live
        self._parquet: pq.ParquetWriter | None = None
        self._stream: IO[str] | None = None
        self._tmp: str | None = None
        if self.out == STDOUT:
            self._stream = sys.stdout
            return
        target = Path(self.out)
        if target.is_dir():
            raise DataError(f"cannot write {target}: it is a directory; name a file")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if live:
                self._stream = target.open("w", encoding="utf-8")
                return
            fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            if self.format == "jsonl":
                self._stream = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None

    def write(self, frame: pd.DataFrame) -> None:
        """Append one chunk of readings."""
        try:
            if self.format == "parquet":
                table = pa.Table.from_pandas(frame, schema=schema.arrow_schema(), preserve_index=False)
                if self._parquet is None:
                    self._parquet = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
                self._parquet.write_table(table)
            else:
                assert self._stream is not None
                self._stream.write(to_json_lines(frame))
                if self.live:
                    self._stream.flush()
        except OSError as exc:
            self.abort()
            raise DataError(f"cannot write {self.out}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._parquet is not None:
            self._parquet.close()
        elif self.format == "parquet" and self._tmp:
            pq.write_table(schema.arrow_schema().empty_table(), self._tmp)
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
        elif self._stream is sys.stdout:
            sys.stdout.flush()
        if self._tmp:
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
            os.replace(self._tmp, self.out)
            self._tmp = None

    def abort(self) -> None:
        """Drop a partially written temporary file."""
        if self._stream is not None and self._stream is not sys.stdout:
            self._stream.close()
        if self._parquet is not None:
            self._parquet.close()
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        self._tmp = None

    def __enter__(self) -> ReadingsWriter:
        """Use as a context manager: closed on success, aborted on error."""
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Close or abort."""
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_readings(chunks: Iterable[pd.DataFrame], out: str | Path) -> int:
    """Write chunks of readings to a file; returns the number written."""
    count = 0
    with ReadingsWriter(out) as writer:
        for chunk in chunks:
            writer.write(chunk)
            count += len(chunk)
    return count


def read_readings(path: str | Path) -> pd.DataFrame:
    """Read a file of readings (JSONL, Parquet, contract CSV or the original AI4I CSV).

    Timestamps come back as timezone-aware UTC datetimes. The table is not validated here:
    call `schema.check_frame` for that.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            frame = pq.read_table(path).to_pandas()
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        else:
            if is_ai4i_csv(path):
                return load_ai4i(path)
            frame = pd.read_csv(path, encoding="utf-8-sig")
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot be read as {fmt}: {str(exc).splitlines()[0]}") from None
    if "timestamp" in frame.columns and not isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype):
        try:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}: bad timestamp: {exc}") from None
    return frame


def is_ai4i_csv(path: str | Path) -> bool:
    """True when the file starts with the original AI4I header."""
    with open(path, encoding="utf-8-sig") as handle:
        return handle.readline().startswith("UDI,")


def load_ai4i(path: str | Path = AI4I_FILE, interval_seconds: float = 60.0) -> pd.DataFrame:
    """Load the original AI4I 2020 CSV (BOM, original headers) as contract readings.

    The file is one machine (`machine_id` "ai4i"); UDI becomes `seq`; the file has no clock, so
    timestamps are `interval_seconds` apart from 2020-01-01 UTC. `Product ID` is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (the AI4I CSV ships in predmaint/data/ai4i2020/)")
    try:
        raw = pd.read_csv(path, encoding="utf-8-sig")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as CSV: {exc}") from None
    missing = [name for name in AI4I_COLUMNS if name not in raw.columns]
    if missing:
        raise DataError(f"{path}: not the AI4I 2020 file; missing column(s): {', '.join(missing)}")
    frame = raw[list(AI4I_COLUMNS)].rename(columns=AI4I_COLUMNS)
    frame.insert(0, "machine_id", AI4I_MACHINE_ID)
    offsets = pd.to_timedelta((frame["seq"] - frame["seq"].iloc[0]) * interval_seconds, unit="s")
    frame.insert(2, "timestamp", pd.Timestamp(AI4I_START) + offsets)
    for name in schema.SENSOR_FIELDS:
        frame[name] = frame[name].astype(np.float64)
    for name in schema.LABEL_FIELDS:
        frame[name] = frame[name].astype(np.int8)
    frame["seq"] = frame["seq"].astype(np.int64)
    return frame[list(schema.FIELD_NAMES)]
