"""The reading contract: every kind of bad reading is rejected as a whole, with its reason."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from predmaint import schema
from predmaint.schema import ReadingError, check_frame, validate_reading

GOOD = schema.EXAMPLE_READING


def test_a_good_reading_passes_unchanged_with_or_without_labels():
    assert validate_reading(GOOD)["machine_id"] == "M0001"
    labelled = GOOD | {"machine_failure": 1, "twf": 0, "hdf": 1, "pwf": 0, "osf": 0, "rnf": 0}
    assert validate_reading(labelled)["hdf"] == 1
    assert validate_reading(GOOD | {"timestamp": "2026-01-01T00:00:00.250+00:00"})


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"seq": None}, "seq: expected an integer"),
        ({"seq": 1.0}, "seq: expected an integer"),
        ({"seq": "1"}, "seq: expected an integer"),
        ({"seq": True}, "seq: expected an integer"),
        ({"seq": -1}, "seq: -1 is below the minimum 0"),
        ({"machine_id": ""}, "machine_id: expected a non-empty string"),
        ({"machine_id": "   "}, "machine_id: expected a non-empty string"),
        ({"machine_id": 7}, "machine_id: expected a non-empty string"),
        ({"machine_id": "x" * 129}, "machine_id: longer than 128"),
        ({"product_type": "X"}, "product_type: 'X' is not one of L, M, H"),
        ({"product_type": "l"}, "product_type"),
        ({"timestamp": "yesterday"}, "timestamp: 'yesterday' is not ISO-8601"),
        ({"timestamp": "2026-01-01T00:00:00"}, "must be UTC"),
        ({"timestamp": "2026-01-01T01:00:00+01:00"}, "must be UTC"),
        ({"timestamp": 1767225600}, "timestamp: expected an ISO-8601 string"),
        ({"air_temperature_k": "298.1"}, "air_temperature_k: expected a number"),
        ({"air_temperature_k": True}, "air_temperature_k: expected a number"),
        ({"air_temperature_k": math.nan}, "not a finite number"),
        ({"torque_nm": math.inf}, "torque_nm: inf is not a finite number"),
        ({"torque_nm": -0.1}, "torque_nm: -0.1 Nm is outside the physical range 0–200 Nm"),
        ({"air_temperature_k": 0}, "outside the physical range 250–350 K"),
        ({"rotational_speed_rpm": 1e9}, "rotational_speed_rpm"),
        ({"tool_wear_min": 5000}, "tool_wear_min"),
        ({"machine_failure": 2}, "machine_failure: expected 0 or 1"),
        ({"twf": True}, "twf: expected 0 or 1"),
        ({"hdf": 1.0}, "hdf: expected 0 or 1"),
        ({"speed": 1500}, "unknown field(s): speed"),
    ],
)
def test_bad_readings_are_rejected_with_a_reason(change, reason):
    with pytest.raises(ReadingError) as caught:
        validate_reading(GOOD | change)
    assert reason in str(caught.value)


@pytest.mark.parametrize("field", schema.REQUIRED_FIELDS)
def test_each_required_field_is_required(field):
    reading = {k: v for k, v in GOOD.items() if k != field}
    with pytest.raises(ReadingError, match=f"missing field\\(s\\): {field}"):
        validate_reading(reading)


@pytest.mark.parametrize("raw", [[], "reading", 3, None])
def test_a_reading_must_be_an_object(raw):
    with pytest.raises(ReadingError, match="expected a JSON object"):
        validate_reading(raw)


def test_every_field_documents_itself():
    for spec in schema.FIELDS:
        assert spec.description
        if spec.kind == "float":
            assert spec.unit and spec.name.endswith(f"_{spec.unit.lower()}")
            assert spec.minimum < spec.maximum


def test_check_frame_flags_bad_rows_and_keeps_good_ones(simulate_frame):
    frame = simulate_frame(machines=2, steps=5, seed=0)
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame = frame.astype({"air_temperature_k": object})
    frame.loc[1, "air_temperature_k"] = math.nan
    frame.loc[2, "product_type"] = "Z"
    frame.loc[3, "seq"] = -4
    frame.loc[4, "timestamp"] = "not a time"
    frame.loc[5, "air_temperature_k"] = "hot"
    reasons = check_frame(frame)
    assert reasons[0] == "" and (reasons[6:] == "").all()
    assert reasons[1].startswith("air_temperature_k: not a finite number")
    assert reasons[2].startswith("product_type")
    assert reasons[3].startswith("seq")
    assert reasons[4].startswith("timestamp")
    assert reasons[5].startswith("air_temperature_k: expected a number")


def test_check_frame_names_missing_and_unknown_columns(simulate_frame):
    frame = simulate_frame(machines=1, steps=2, seed=0)
    with pytest.raises(ReadingError, match="missing column\\(s\\): torque_nm"):
        check_frame(frame.drop(columns=["torque_nm"]))
    with pytest.raises(ReadingError, match="unknown column\\(s\\): colour"):
        check_frame(frame.assign(colour="red"))


def test_check_frame_rejects_timestamps_outside_utc(simulate_frame):
    frame = simulate_frame(machines=1, steps=2, seed=0)
    frame["timestamp"] = frame["timestamp"].dt.tz_convert("Europe/Berlin")
    assert (check_frame(frame) != "").all()
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    assert (check_frame(frame) != "").all()


def test_arrow_schema_follows_the_contract():
    arrow = schema.arrow_schema()
    assert arrow.names == list(schema.FIELD_NAMES)
    assert schema.arrow_schema(with_labels=False).names == list(schema.REQUIRED_FIELDS)


def test_docs_describe_every_field():
    doc = (Path(__file__).parents[1] / "docs" / "data-contract.md").read_text(encoding="utf-8")
    for name in schema.FIELD_NAMES:
        assert f"`{name}`" in doc
