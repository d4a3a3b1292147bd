"""The sensor-reading contract: field names, units, dtypes and valid ranges.

This module is the single source of truth for what a reading is. The simulator writes it,
ingestion validates against it, training reads it and the service accepts it. A reading with a
missing or unknown field, a wrong type, NaN/inf or a value outside its physical range is invalid
as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

PRODUCT_TYPES: tuple[str, ...] = ("L", "M", "H")
"""Product quality variants of the AI4I process: low, medium, high."""

FAILURE_MODES: tuple[str, ...] = ("twf", "hdf", "pwf", "osf", "rnf")
"""Tool wear, heat dissipation, power, overstrain and random failures."""

LABEL_FIELDS: tuple[str, ...] = ("machine_failure", *FAILURE_MODES)
"""Ground truth, present when known; never model features."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of a reading: its kind, unit, physical range and meaning."""

    name: str
    kind: Literal["str", "int", "float", "timestamp", "category", "flag"]
    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = True

    def arrow_type(self) -> pa.DataType:
        """Arrow type used when the field is stored in Parquet."""
        return {
            "str": pa.string(),
            "category": pa.string(),
            "int": pa.int64(),
            "flag": pa.int8(),
            "float": pa.float64(),
            "timestamp": pa.timestamp("us", tz="UTC"),
        }[self.kind]


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "machine_id", "str", "Identifier of the machine that produced the reading: printable ASCII, 1-128."
    ),
    FieldSpec(
        "seq",
        "int",
        "Process step of this machine, strictly increasing per machine.",
        minimum=0,
        maximum=2**40 - 1,
    ),
    FieldSpec("timestamp", "timestamp", "UTC time of the reading, ISO-8601 with offset Z or +00:00."),
    FieldSpec("product_type", "category", "Product quality variant: L, M or H."),
    FieldSpec("air_temperature_k", "float", "Ambient air temperature.", "K", 250.0, 350.0),
    FieldSpec("process_temperature_k", "float", "Process temperature.", "K", 250.0, 400.0),
    FieldSpec("rotational_speed_rpm", "float", "Spindle rotational speed.", "rpm", 0.0, 10_000.0),
    FieldSpec("torque_nm", "float", "Spindle torque.", "Nm", 0.0, 200.0),
    FieldSpec("tool_wear_min", "float", "Minutes of use of the current tool.", "min", 0.0, 1_000.0),
    FieldSpec("machine_failure", "flag", "1 when any failure mode occurred.", required=False),
    FieldSpec("twf", "flag", "Tool wear failure.", required=False),
    FieldSpec("hdf", "flag", "Heat dissipation failure.", required=False),
    FieldSpec("pwf", "flag", "Power failure.", required=False),
    FieldSpec("osf", "flag", "Overstrain failure.", required=False),
    FieldSpec("rnf", "flag", "Random failure.", required=False),
)

EXAMPLE_READING: dict[str, Any] = {
    "machine_id": "M0001",
    "seq": 0,
    "timestamp": "2026-01-01T00:00:00Z",
    "product_type": "L",
    "air_temperature_k": 298.1,
    "process_temperature_k": 308.6,
    "rotational_speed_rpm": 1551,
    "torque_nm": 42.8,
    "tool_wear_min": 0,
}
"""A valid reading (sensor values of the AI4I file's first row), for documentation, clients and tests."""

FIELD_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
SENSOR_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.kind == "float")
MACHINE_ID_MAX_LENGTH = 128
MACHINE_ID_PATTERN = r"^[!-~](?:[ -~]*[!-~])?$"
"""Printable ASCII without surrounding blanks: ids end up in file names, logs and metric labels."""
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
"""Readings stamped before this are refused: no machine of this fleet reported earlier."""
DEFAULT_MAX_CLOCK_SKEW = timedelta(hours=1)
"""How far ahead of the receiving machine's clock ingestion accepts a reading's timestamp."""

# Physical limits of the AI4I process, shared by the simulator's labels and the tests.
HDF_MAX_DELTA_T_K = 8.6
HDF_MAX_SPEED_RPM = 1380.0
PWF_MIN_POWER_W = 3500.0
PWF_MAX_POWER_W = 9000.0
OSF_STRAIN_LIMIT_MIN_NM: dict[str, float] = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}


def power_w(torque_nm: Any, rotational_speed_rpm: Any) -> Any:
    """Mechanical power in watts: torque × angular speed."""
    return torque_nm * rotational_speed_rpm * (2.0 * math.pi / 60.0)


def arrow_schema(with_labels: bool = True) -> pa.Schema:
    """Arrow schema of a table of readings, in contract field order."""
    return pa.schema(
        [
            pa.field(f.name, f.arrow_type(), nullable=not f.required)
            for f in FIELDS
            if with_labels or f.required
        ]
    )


class ReadingError(ValueError):
    """A reading violates the contract; the message names the field, the value and the rule."""


def shown(value: Any, limit: int = 60) -> str:
    """`value` as an ASCII-only repr cut to `limit` characters, safe in any message or log line."""
    text = ascii(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def ascii_text(text: str, limit: int = 200) -> str:
    """`text` with every non-ASCII or unprintable character escaped, cut to `limit` characters."""
    escaped = "".join(c if c.isascii() and c.isprintable() else ascii(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else f"{escaped[: limit - 3]}..."


def shown_name(key: str) -> str:
    """A field name as it is when plain printable ASCII, else `shown`."""
    return key if key.isascii() and key.isprintable() and len(key) <= 60 else shown(key)


def machine_id_problem(value: Any) -> str | None:
    """Why `value` is not a valid machine id, or None when it is one."""
    if not isinstance(value, str) or not value.strip():
        return f"machine_id: expected a non-empty string, got {shown(value)}"
    if len(value) > MACHINE_ID_MAX_LENGTH:
        return f"machine_id: longer than {MACHINE_ID_MAX_LENGTH} characters"
    if not (value.isascii() and value.isprintable()):
        return f"machine_id: {shown(value)} holds characters other than printable ASCII"
    if value != value.strip():
        return f"machine_id: {shown(value)} starts or ends with whitespace"
    return None


@dataclass(frozen=True)
class TimeBounds:
    """The time window a reading's timestamp must fall in: not before 2000, not ahead of `now` + skew."""

    now: datetime
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW

    @classmethod
    def from_clock(cls, max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW) -> TimeBounds:
        """Bounds relative to this machine's clock now."""
        return cls(datetime.now(UTC), max_clock_skew)

    @property
    def latest(self) -> datetime:
        """The latest timestamp accepted."""
        return self.now + self.max_clock_skew

    def problem(self, stamp: datetime) -> str | None:
        """Why `stamp` (a UTC datetime) is out of bounds, or None when it is inside."""
        if stamp < EARLIEST_TIMESTAMP:
            return f"timestamp: {stamp.isoformat()} is before {EARLIEST_TIMESTAMP:%Y-%m-%d}"
        if stamp > self.latest:
            return (
                f"timestamp: {stamp.isoformat()} is more than {self.max_clock_skew.total_seconds():.0f} s "
                "ahead of this machine's clock; fix the sender's clock (or raise "
                "ingest.max_clock_skew_seconds)"
            )
        return None


def parse_timestamp(value: Any) -> datetime:
    """Parse a UTC ISO-8601 timestamp; anything else is a `ReadingError`."""
    if not isinstance(value, str):
        raise ReadingError(f"timestamp: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReadingError(f"timestamp: {shown(value)} is not ISO-8601 (e.g. 2026-01-01T00:00:00Z)") from None
    if parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
        raise ReadingError(f"timestamp: {shown(value)} must be UTC (end it with Z or +00:00)")
    return parsed.astimezone(UTC)


def validate_reading(record: Any, bounds: TimeBounds | None = None) -> dict[str, Any]:
    """Check one reading (a mapping, e.g. parsed JSON) and return it normalised.

    With `bounds`, the timestamp must also fall inside them (ingestion sets them; `/predict` does not).

    Raises:
        ReadingError: naming the first field that breaks the contract and why.
    """
    if not isinstance(record, dict):
        raise ReadingError(f"reading: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(FIELD_NAMES))
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ReadingError(f"unknown field(s): {', '.join(shown_name(name) for name in unknown[:5])}{more}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise ReadingError(f"missing field(s): {', '.join(missing)}")
    out: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.name in record:
            out[spec.name] = _check_value(spec, record[spec.name])
    if bounds is not None:
        problem = bounds.problem(parse_timestamp(out["timestamp"]))
        if problem:
            raise ReadingError(problem)
    return out


def _check_value(spec: FieldSpec, value: Any) -> Any:
    name = spec.name
    if spec.kind == "str":
        problem = machine_id_problem(value)
        if problem:
            raise ReadingError(problem)
        return value
    if spec.kind == "category":
        if value not in PRODUCT_TYPES:
            raise ReadingError(f"{name}: {shown(value)} is not one of {', '.join(PRODUCT_TYPES)}")
        return value
    if spec.kind == "timestamp":
        parse_timestamp(value)
        return value
    if spec.kind == "flag":
        if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int):
            raise ReadingError(f"{name}: expected 0 or 1, got {shown(value)}")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReadingError(f"{name}: expected an integer, got {shown(value)}")
        if spec.minimum is not None and value < spec.minimum:
            raise ReadingError(f"{name}: {value} is below the minimum {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise ReadingError(f"{name}: {value} is above the maximum {spec.maximum:.0f}")
        return value
    # float: JSON integers are fine, booleans and strings are not
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingError(f"{name}: expected a number, got {shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ReadingError(f"{name}: {shown(value)} is not a finite number")
    if not spec.minimum <= number <= spec.maximum:  # type: ignore[operator]
        raise ReadingError(
            f"{name}: {number:g} {spec.unit} is outside the physical range "
            f"{spec.minimum:g}–{spec.maximum:g} {spec.unit}"
        )
    return number


def check_frame(frame: pd.DataFrame, bounds: TimeBounds | None = None) -> pd.Series:
    """Vectorised contract check of a table of readings (timestamps inside `bounds` when given).

    Returns:
        One reason per row: an empty string for a valid reading, otherwise the first rule the
        row breaks. Column-level problems (missing or unknown columns) raise instead.

    Raises:
        ReadingError: when columns are missing or unknown.
    """
    unknown = sorted(set(frame.columns) - set(FIELD_NAMES))
    if unknown:
        raise ReadingError(f"unknown column(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED_FIELDS if name not in frame.columns]
    if missing:
        raise ReadingError(f"missing column(s): {', '.join(missing)}")

    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask: Any, reason: str) -> None:
        mask = pd.Series(mask, index=frame.index).fillna(True).astype(bool)
        reasons[mask & (reasons == "")] = reason

    ids = frame["machine_id"]
    flag(
        ids.map(lambda v: machine_id_problem(v) is not None),
        "machine_id: expected 1-128 printable ASCII characters without surrounding whitespace",
    )
    seq = pd.to_numeric(frame["seq"], errors="coerce")
    seq_spec = FIELD_BY_NAME["seq"]
    flag(
        seq.isna() | (seq < seq_spec.minimum) | (seq > seq_spec.maximum) | (seq != np.floor(seq)),
        f"seq: expected an integer from 0 to {seq_spec.maximum:.0f}",
    )
    ts = frame["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dt.tz) != "UTC":
        ok = ts.map(_timestamp_ok)
        flag(~ok, "timestamp: expected UTC ISO-8601")
        ts = pd.to_datetime(ts.where(ok), utc=True, format="ISO8601", errors="coerce")
    if bounds is not None:
        flag(ts < EARLIEST_TIMESTAMP, f"timestamp: before {EARLIEST_TIMESTAMP:%Y-%m-%d}")
        flag(
            ts > bounds.latest,
            "timestamp: ahead of this machine's clock by more than ingest.max_clock_skew_seconds",
        )
    flag(~frame["product_type"].isin(PRODUCT_TYPES), "product_type: expected L, M or H")
    for name in SENSOR_FIELDS:
        spec = FIELD_BY_NAME[name]
        col = frame[name]
        if col.dtype == object or col.dtype == bool:
            flag(
                ~col.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
                f"{name}: expected a number",
            )
        values = pd.to_numeric(col, errors="coerce").astype(float)
        flag(~np.isfinite(values), f"{name}: not a finite number")
        flag(
            (values < spec.minimum) | (values > spec.maximum),
            f"{name}: outside {spec.minimum:g}–{spec.maximum:g} {spec.unit}",
        )
    for name in LABEL_FIELDS:
        if name in frame.columns:  # labels are optional: missing (null) is fine, anything else is 0 or 1
            flag(~(frame[name].isin([0, 1]) | frame[name].isna()), f"{name}: expected 0 or 1")
    return reasons


def _timestamp_ok(value: Any) -> bool:
    if isinstance(value, pd.Timestamp | datetime):
        return value.tzinfo is not None and value.utcoffset() == timedelta(0)
    try:
        parse_timestamp(value)
    except ReadingError:
        return False
    return True
