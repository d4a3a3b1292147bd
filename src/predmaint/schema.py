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
    FieldSpec("machine_id", "str", "Identifier of the machine that produced the reading."),
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


def parse_timestamp(value: Any) -> datetime:
    """Parse a UTC ISO-8601 timestamp; anything else is a `ReadingError`."""
    if not isinstance(value, str):
        raise ReadingError(f"timestamp: expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ReadingError(f"timestamp: {value!r} is not ISO-8601 (e.g. 2026-01-01T00:00:00Z)") from None
    if parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
        raise ReadingError(f"timestamp: {value!r} must be UTC (end it with Z or +00:00)")
    return parsed.astimezone(UTC)


def validate_reading(record: Any) -> dict[str, Any]:
    """Check one reading (a mapping, e.g. parsed JSON) and return it normalised.

    Raises:
        ReadingError: naming the first field that breaks the contract and why.
    """
    if not isinstance(record, dict):
        raise ReadingError(f"reading: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(FIELD_NAMES))
    if unknown:
        raise ReadingError(f"unknown field(s): {', '.join(unknown)}")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise ReadingError(f"missing field(s): {', '.join(missing)}")
    out: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.name in record:
            out[spec.name] = _check_value(spec, record[spec.name])
    return out


def _check_value(spec: FieldSpec, value: Any) -> Any:
    name = spec.name
    if spec.kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise ReadingError(f"{name}: expected a non-empty string, got {value!r}")
        if len(value) > MACHINE_ID_MAX_LENGTH:
            raise ReadingError(f"{name}: longer than {MACHINE_ID_MAX_LENGTH} characters")
        return value
    if spec.kind == "category":
        if value not in PRODUCT_TYPES:
            raise ReadingError(f"{name}: {value!r} is not one of {', '.join(PRODUCT_TYPES)}")
        return value
    if spec.kind == "timestamp":
        parse_timestamp(value)
        return value
    if spec.kind == "flag":
        if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int):
            raise ReadingError(f"{name}: expected 0 or 1, got {value!r}")
        return value
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReadingError(f"{name}: expected an integer, got {value!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise ReadingError(f"{name}: {value} is below the minimum {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise ReadingError(f"{name}: {value} is above the maximum {spec.maximum:.0f}")
        return value
    # float: JSON integers are fine, booleans and strings are not
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReadingError(f"{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ReadingError(f"{name}: {value!r} is not a finite number")
    if not spec.minimum <= number <= spec.maximum:  # type: ignore[operator]
        raise ReadingError(
            f"{name}: {number:g} {spec.unit} is outside the physical range "
            f"{spec.minimum:g}–{spec.maximum:g} {spec.unit}"
        )
    return number


def check_frame(frame: pd.DataFrame) -> pd.Series:
    """Vectorised contract check of a table of readings.

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
        ~ids.map(lambda v: isinstance(v, str) and bool(v.strip()) and len(v) <= MACHINE_ID_MAX_LENGTH),
        "machine_id: expected a non-empty string",
    )
    seq = pd.to_numeric(frame["seq"], errors="coerce")
    seq_spec = FIELD_BY_NAME["seq"]
    flag(
        seq.isna() | (seq < seq_spec.minimum) | (seq > seq_spec.maximum) | (seq != np.floor(seq)),
        f"seq: expected an integer from 0 to {seq_spec.maximum:.0f}",
    )
    ts = frame["timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) or str(ts.dt.tz) != "UTC":
        ts = ts.map(_timestamp_ok)
        flag(~ts, "timestamp: expected UTC ISO-8601")
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
