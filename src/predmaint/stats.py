"""Summary statistics of readings: a streaming tally and the AI4I comparison set."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from predmaint import schema


@dataclass
class Tally:
    """Counts accumulated chunk by chunk, so summaries of any stream take constant memory."""

    readings: int = 0
    machine_ids: set[str] = field(default_factory=set)
    labels: dict[str, int] = field(default_factory=lambda: dict.fromkeys(schema.LABEL_FIELDS, 0))
    product_types: dict[str, int] = field(default_factory=lambda: dict.fromkeys(schema.PRODUCT_TYPES, 0))
    first_timestamp: pd.Timestamp | None = None
    last_timestamp: pd.Timestamp | None = None

    def add(self, frame: pd.DataFrame) -> None:
        """Count one chunk."""
        if frame.empty:
            return
        self.readings += len(frame)
        self.machine_ids.update(frame["machine_id"].unique())
        for name in schema.LABEL_FIELDS:
            if name in frame.columns:
                self.labels[name] += int(frame[name].sum())
        for kind, count in frame["product_type"].value_counts().items():
            self.product_types[str(kind)] = self.product_types.get(str(kind), 0) + int(count)
        first, last = frame["timestamp"].min(), frame["timestamp"].max()
        self.first_timestamp = first if self.first_timestamp is None else min(first, self.first_timestamp)
        self.last_timestamp = last if self.last_timestamp is None else max(last, self.last_timestamp)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "readings": self.readings,
            "machines": len(self.machine_ids),
            "failures": self.labels["machine_failure"],
            "failure_rate": self.labels["machine_failure"] / self.readings if self.readings else 0.0,
            "failure_modes": {name: self.labels[name] for name in schema.FAILURE_MODES},
            "product_types": self.product_types,
            "first_timestamp": _iso(self.first_timestamp),
            "last_timestamp": _iso(self.last_timestamp),
        }


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def describe(frame: pd.DataFrame) -> dict[str, float]:
    """The statistics the simulator is calibrated on, as named in the AI4I dataset's README.

    Step-to-step figures are taken within each machine, in `seq` order.
    """
    frame = frame.sort_values(["machine_id", "seq"], kind="stable")
    air = frame["air_temperature_k"]
    process = frame["process_temperature_k"]
    delta_t = process - air
    speed = frame["rotational_speed_rpm"]
    torque = frame["torque_nm"]
    power = schema.power_w(torque, speed)
    by_machine = frame["machine_id"]
    out: dict[str, float] = {
        "readings": float(len(frame)),
        "air_temperature_k_mean": air.mean(),
        "air_temperature_k_sd": air.std(),
        "air_temperature_k_step_sd": air.groupby(by_machine).diff().std(),
        "process_temperature_k_mean": process.mean(),
        "process_temperature_k_sd": process.std(),
        "delta_t_k_mean": delta_t.mean(),
        "delta_t_k_sd": delta_t.std(),
        "rotational_speed_rpm_mean": speed.mean(),
        "rotational_speed_rpm_sd": speed.std(),
        "torque_nm_mean": torque.mean(),
        "torque_nm_sd": torque.std(),
        "speed_torque_corr": float(np.corrcoef(speed, torque)[0, 1]),
        "power_w_mean": power.mean(),
        "power_w_sd": power.std(),
        "tool_wear_min_mean": frame["tool_wear_min"].mean(),
        "tool_wear_min_sd": frame["tool_wear_min"].std(),
    }
    for kind in schema.PRODUCT_TYPES:
        out[f"share_{kind}"] = float((frame["product_type"] == kind).mean())
    for name in schema.LABEL_FIELDS:
        if name in frame.columns:
            out[f"rate_{name}"] = float(frame[name].mean())
    return {key: float(value) for key, value in out.items()}
