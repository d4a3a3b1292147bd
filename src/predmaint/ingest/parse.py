"""Turn raw payloads into contract readings and dead letters, fast.

The fast path decodes and validates each item with msgspec against a struct generated from
`predmaint.schema`; only rejected items take the slow path, `schema.validate_reading`, whose
message names the field, the value and the rule. Both derive from the same field specs, and a
test checks that they agree.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pandas as pd

from predmaint import schema

_ZERO = timedelta(0)
_KEY_END = re.compile(rb'"\s*:')  # ends every key of a JSON object; may also occur inside a string


_MAX_INT_DIGITS = 40  # far above any field's range; Python refuses over 4,300 digits with ValueError


class Unreadable(ValueError):
    """A payload that is not JSON this service reads: the message says why, in ASCII."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = sorted({key for key in keys if keys.count(key) > 1})
        raise Unreadable(f"duplicate key(s): {', '.join(schema.shown_name(key) for key in twice)}")
    return dict(pairs)


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise Unreadable(f"invalid JSON: an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def load_json(text: str) -> Any:
    """Parse JSON strictly: duplicate keys, depth bombs and huge numbers are `Unreadable`, not crashes.

    NaN and Infinity are read (so that their reason can be named by the contract check).
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise Unreadable(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise Unreadable("invalid JSON: nested too deeply") from None
    except Unreadable:
        raise
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise Unreadable(f"invalid JSON: {schema.ascii_text(str(exc), 120)}") from None


def _field_type(spec: schema.FieldSpec) -> Any:
    if spec.kind == "str":
        return Annotated[str, msgspec.Meta(min_length=1, max_length=schema.MACHINE_ID_MAX_LENGTH)]
    if spec.kind == "category":
        return Literal[schema.PRODUCT_TYPES]  # type: ignore[valid-type]
    if spec.kind == "timestamp":
        return str
    if spec.kind == "int":
        return Annotated[int, msgspec.Meta(ge=int(spec.minimum), le=int(spec.maximum))]
    if spec.kind == "flag":
        return Annotated[int, msgspec.Meta(ge=0, le=1)]
    return Annotated[float, msgspec.Meta(ge=spec.minimum, le=spec.maximum)]


def _reading_struct() -> type[msgspec.Struct]:
    fields: list[tuple[Any, ...]] = []
    for spec in schema.FIELDS:
        kind = _field_type(spec)
        if spec.required:
            fields.append((spec.name, kind))
        else:
            fields.append((spec.name, kind | msgspec.UnsetType, msgspec.UNSET))
    return msgspec.defstruct("Reading", fields, forbid_unknown_fields=True, kw_only=True)


Reading = _reading_struct()
_DECODER = msgspec.json.Decoder(Reading)
_ITEMS_DECODER = msgspec.json.Decoder(list[msgspec.Raw] | dict[str, msgspec.Raw])


@dataclass(frozen=True)
class DeadLetter:
    """An input that is not a valid reading, kept with its reason."""

    raw: str
    reason: str
    position: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form stored in the dead-letter files."""
        return {"raw": self.raw, "reason": self.reason, "position": self.position}


@dataclass
class Parsed:
    """Valid readings as a contract DataFrame, plus the dead letters of one batch."""

    readings: pd.DataFrame
    dead_letters: list[DeadLetter]


def explain(raw: bytes | str, bounds: schema.TimeBounds | None = None) -> str:
    """Why `raw` is not a valid reading (the slow path, for rejected items only)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    try:
        obj = load_json(text)
        schema.validate_reading(obj, bounds)
    except (Unreadable, schema.ReadingError) as exc:
        return str(exc)
    try:
        _check_fast(text.encode("utf-8", errors="surrogatepass"), bounds)
    except (msgspec.MsgspecError, ValueError, RecursionError) as exc:
        return schema.ascii_text(str(exc))
    return "valid"  # pragma: no cover - only reached if the two paths disagree, which a test guards


def _check_fast(raw: bytes, bounds: schema.TimeBounds | None = None) -> tuple[Any, datetime]:
    reading = _DECODER.decode(raw)
    stamp = datetime.fromisoformat(reading.timestamp)
    if stamp.tzinfo is None or stamp.utcoffset() != _ZERO:
        raise ValueError("timestamp must be UTC")
    problem = schema.machine_id_problem(reading.machine_id) or (bounds and bounds.problem(stamp))
    if problem:
        raise ValueError(problem)
    fields_set = sum(1 for name in reading.__struct_fields__ if getattr(reading, name) is not msgspec.UNSET)
    if len(_KEY_END.findall(raw)) > fields_set:  # a key twice (msgspec keeps the last), or '":' in a string
        load_json(raw.decode("utf-8"))  # exact check, raises Unreadable on a duplicate key
    return reading, stamp


def split_payload(payload: bytes) -> list[bytes] | None:
    """Items of a JSON payload holding one reading or an array of readings; None if not JSON."""
    try:
        decoded = _ITEMS_DECODER.decode(payload)
    except (msgspec.MsgspecError, RecursionError):
        return None
    if isinstance(decoded, dict):
        return [payload]
    return [bytes(item) for item in decoded]


def parse_items(
    items: list[bytes], positions: list[str | None] | None = None, bounds: schema.TimeBounds | None = None
) -> Parsed:
    """Validate raw JSON readings; invalid ones become dead letters with their reason."""
    columns, dead = parse_columns(items, positions, bounds)
    return Parsed(to_frame(columns), dead)


def parse_columns(
    items: list[bytes], positions: list[str | None] | None = None, bounds: schema.TimeBounds | None = None
) -> tuple[dict[str, Any], list[DeadLetter]]:
    """`parse_items` without pandas: the valid readings as columns, for the service's request path.

    Floats and integers are numpy arrays; text fields are lists; `timestamp` is a list of UTC
    datetimes; label flags are lists of 0, 1 or None (not sent). `to_frame` makes the contract
    DataFrame from them. With `bounds`, timestamps outside them are dead letters too.
    """
    readings: list[Any] = []
    stamps: list[datetime] = []
    dead: list[DeadLetter] = []
    for index, raw in enumerate(items):
        try:
            reading, stamp = _check_fast(raw, bounds)
        except (msgspec.MsgspecError, ValueError, RecursionError):
            position = positions[index] if positions else None
            dead.append(DeadLetter(raw.decode("utf-8", errors="replace"), explain(raw, bounds), position))
            continue
        readings.append(reading)
        stamps.append(stamp)
    columns: dict[str, Any] = {}
    for spec in schema.FIELDS:
        name = spec.name
        if spec.kind == "timestamp":
            columns[name] = stamps
        elif spec.kind == "flag":
            values = [getattr(r, name) for r in readings]
            columns[name] = [None if v is msgspec.UNSET else v for v in values]
        elif spec.kind == "float":
            columns[name] = np.fromiter((getattr(r, name) for r in readings), np.float64, len(readings))
        elif spec.kind == "int":
            columns[name] = np.fromiter((getattr(r, name) for r in readings), np.int64, len(readings))
        else:
            columns[name] = [getattr(r, name) for r in readings]
    return columns, dead


def column_list(column: Any) -> list[Any]:
    """A column of a DataFrame or of `parse_columns` as a list of Python values."""
    return column.tolist() if hasattr(column, "tolist") else list(column)


def to_frame(columns: dict[str, Any] | pd.DataFrame) -> pd.DataFrame:
    """The contract DataFrame of columns from `parse_columns` (a DataFrame is returned as it is)."""
    if isinstance(columns, pd.DataFrame):
        return columns
    frame = dict(columns)
    stamps = columns["timestamp"]
    frame["timestamp"] = pd.DatetimeIndex(stamps, dtype="datetime64[us, UTC]") if stamps else _empty_ts()
    for name in schema.LABEL_FIELDS:
        frame[name] = pd.array(columns[name], dtype="Int8")
    return pd.DataFrame(frame)


def _empty_ts() -> pd.DatetimeIndex:
    return pd.DatetimeIndex([], dtype="datetime64[us, UTC]")


def validate_frame(frame: pd.DataFrame, source: str, bounds: schema.TimeBounds | None = None) -> Parsed:
    """Validate an in-process table of readings (e.g. from the simulator) the vectorised way."""
    reasons = schema.check_frame(frame, bounds)
    bad = reasons != ""
    dead = [
        DeadLetter(row_json(row), reason, f"{source}#{index}")
        for (index, row), reason in zip(frame[bad].iterrows(), reasons[bad], strict=True)
    ]
    good = frame[~bad].reset_index(drop=True)
    good = good.assign(timestamp=pd.to_datetime(good["timestamp"], utc=True).astype("datetime64[us, UTC]"))
    for name in schema.LABEL_FIELDS:
        good[name] = (
            good[name].astype("Int8") if name in good.columns else pd.array([None] * len(good), "Int8")
        )
    return Parsed(good[list(schema.FIELD_NAMES)], dead)


def row_json(row: pd.Series | dict[str, Any]) -> str:
    """One table row as JSON text (timestamps in ISO form, NaN and infinities as strings)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp):
            value = value.isoformat()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif value is pd.NA or value is pd.NaT:
            value = None
        out[str(key)] = value
    return json.dumps(out, default=str)
