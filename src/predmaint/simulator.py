"""Fleet simulator following the generative process of the AI4I 2020 dataset.

Each machine is one AI4I process: slow random-walk temperatures, torque drawn per product,
speed tied to torque, tool wear growing with the product type and reset at a tool change, and
the five failure modes decided by the published rules. Constants are calibrated on the real
file (see `docs/simulator.md`).

Randomness is drawn from streams keyed by (seed, machine, purpose) and consumed step by step,
so the output is a pure function of the options: the same seed gives the same bytes whatever
the chunk size, and machine 3 of a 5-machine fleet reads the same as machine 3 of a 500-machine
fleet. Readings are produced in chunks, so memory stays flat for any number of steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from predmaint import schema
from predmaint.scenarios import Scenario

# --- calibration on ai4i2020.csv -----------------------------------------------------------
AIR_MEAN_K = 300.0
AIR_SD_K = 2.0
AIR_STEP_SD_K = 0.054  # step-to-step sd; 0.068 K once readings are rounded to 0.1 K
DELTA_T_MEAN_K = 10.0
DELTA_T_SD_K = 1.0
DELTA_T_STEP_SD_K = 0.041  # 0.071 K once both temperatures are rounded
AIR_DELTA_T_CORR = -0.70  # process temperature sd 1.48 K = sqrt(2² + 1² + 2·ρ·2·1)
TORQUE_MEAN_NM = 40.0
TORQUE_SD_NM = 10.0
# speed = (A / torque + B) · exp(ε), ε ~ N(0, σ²), capped at low torque (fit on the real file)
SPEED_A = 20_025.0
SPEED_B_RPM = 998.3
SPEED_LOG_SD = 0.0332
SPEED_CAP_RPM = 2750.0
TYPE_SHARES: dict[str, float] = {"L": 0.6, "M": 0.3, "H": 0.1}
WEAR_PER_STEP_MIN: dict[str, int] = {"L": 2, "M": 3, "H": 5}
# The dataset's text says 200–240 min; the file's 119 tool changes have median 215 and 90 % below
# 228 min, which 200–230 reproduces.
TOOL_CHANGE_WEAR_MIN = (200.0, 230.0)
TWF_SHARE_OF_TOOL_CHANGES = 46 / 119  # tool changes in the real file that are failures
RNF_PROBABILITY = 0.001

# Random streams per machine (the spawn key's second element).
_STREAM_INIT, _STREAM_NORMAL, _STREAM_UNIFORM, _STREAM_TOOL = range(4)
# Columns of the per-step normal draws.
_N_AIR, _N_DT, _N_TORQUE, _N_SPEED, _N_TORQUE_NOISE, _N_SPEED_NOISE = range(6)
# Columns of the per-step uniform draws.
_U_TYPE, _U_RNF = range(2)

_TYPES = np.array(schema.PRODUCT_TYPES, dtype=object)  # index 0, 1, 2 = L, M, H
_WEAR_INC = np.array([WEAR_PER_STEP_MIN[t] for t in schema.PRODUCT_TYPES])
_OSF_LIMIT = np.array([schema.OSF_STRAIN_LIMIT_MIN_NM[t] for t in schema.PRODUCT_TYPES])


SENSOR_BIAS_FACTOR = 1.15
COOLING_LOSS_K = 1.5
DRIFTED_TYPE_SHARES: dict[str, float] = {"L": 1 / 3, "M": 1 / 6, "H": 0.5}
NOISE_FACTOR = 2.0
WEAR_FACTOR = 2


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate."""

    machines: int
    steps: int
    seed: int = 0
    interval_seconds: float = 60.0
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    scenario: Scenario = Scenario.none
    onset: int = 0

    def __post_init__(self) -> None:
        """Reject impossible specs with a message naming the option."""
        if self.machines < 1:
            raise ValueError(f"--machines must be at least 1, got {self.machines}")
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if self.seed < 0:
            raise ValueError(f"--seed must be 0 or more, got {self.seed}")
        if not (self.interval_seconds > 0 and math.isfinite(self.interval_seconds)):
            raise ValueError(f"--interval must be a positive number of seconds, got {self.interval_seconds}")
        if self.onset < 0:
            raise ValueError(f"--onset must be 0 or more, got {self.onset}")
        if self.start.tzinfo is None:
            raise ValueError("--start must be a UTC timestamp, e.g. 2026-01-01T00:00:00Z")

    @property
    def readings(self) -> int:
        """Total number of readings: one per machine per step."""
        return self.machines * self.steps


def machine_ids(count: int) -> list[str]:
    """Identifiers of the first `count` machines (M0001, M0002, …)."""
    width = max(4, len(str(count)))
    return [f"M{i:0{width}d}" for i in range(1, count + 1)]


def _generator(seed: int, machine: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(machine, stream))))


# Random walks around the means, as mean-reverting AR(1) processes with the real file's sds.
_PHI_AIR = 1.0 - AIR_STEP_SD_K**2 / (2 * AIR_SD_K**2)
_PHI_DT = 1.0 - (
    (DELTA_T_STEP_SD_K**2 - (AIR_DELTA_T_CORR * DELTA_T_SD_K / AIR_SD_K) ** 2 * AIR_STEP_SD_K**2)
    / (1 - AIR_DELTA_T_CORR**2)
) / (2 * DELTA_T_SD_K**2)


class _Machine:
    """State of one simulated machine carried from chunk to chunk."""

    def __init__(self, seed: int, index: int) -> None:
        init = _generator(seed, index, _STREAM_INIT)
        self.normal = _generator(seed, index, _STREAM_NORMAL)
        self.uniform = _generator(seed, index, _STREAM_UNIFORM)
        self.tool = _generator(seed, index, _STREAM_TOOL)
        self.air_dev = init.normal(0.0, AIR_SD_K)  # drawn from the stationary distribution
        self.dt_dev = init.normal(0.0, 1.0)
        self.tool_change_at = init.uniform(*TOOL_CHANGE_WEAR_MIN)
        self.wear = float(init.integers(0, int(TOOL_CHANGE_WEAR_MIN[0])))

    def wear_block(self, increments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tool wear shown on each reading of the block, tool changes and TWF flags.

        A reading shows the wear before its product is processed; when that wear has reached the
        tool's change point the tool is replaced after the step (a TWF with the real file's share)
        and the next reading shows 0.
        """
        n = len(increments)
        wear = np.empty(n)
        changed = np.zeros(n, dtype=bool)
        twf = np.zeros(n, dtype=bool)
        start = 0
        # A tool lives at most change-point / smallest increment steps; look that far ahead.
        horizon = int(TOOL_CHANGE_WEAR_MIN[1] // WEAR_PER_STEP_MIN["L"]) + 2
        while start < n:
            stop = min(n, start + horizon)
            shown = self.wear + np.concatenate(([0.0], np.cumsum(increments[start : stop - 1])))
            hits = np.flatnonzero(shown >= self.tool_change_at)
            if hits.size == 0:
                wear[start:stop] = shown
                self.wear = shown[-1] + increments[stop - 1]
                start = stop
                continue
            hit = int(hits[0])
            wear[start : start + hit + 1] = shown[: hit + 1]
            changed[start + hit] = True
            twf[start + hit] = self.tool.random() < TWF_SHARE_OF_TOOL_CHANGES
            self.tool_change_at = self.tool.uniform(*TOOL_CHANGE_WEAR_MIN)
            self.wear = 0.0
            start += hit + 1
        return wear, changed, twf


def simulate(spec: SimulationSpec, chunk_readings: int = 50_000) -> Iterator[pd.DataFrame]:
    """Yield the fleet's readings in time order (step by step, machines in order), in chunks.

    Each chunk is a DataFrame in the contract's column order, with ground-truth labels.
    """
    ids = np.array(machine_ids(spec.machines), dtype=object)
    machines = [_Machine(spec.seed, i) for i in range(spec.machines)]
    steps_per_chunk = max(1, chunk_readings // spec.machines)
    start_us = int(spec.start.timestamp() * 1_000_000)
    interval_us = round(spec.interval_seconds * 1_000_000)
    for first in range(0, spec.steps, steps_per_chunk):
        steps = np.arange(first, min(spec.steps, first + steps_per_chunk))
        yield _chunk(spec, machines, ids, steps, start_us, interval_us)


def _chunk(
    spec: SimulationSpec,
    machines: list[_Machine],
    ids: np.ndarray,
    steps: np.ndarray,
    start_us: int,
    interval_us: int,
) -> pd.DataFrame:
    m, b = len(machines), len(steps)
    normal = np.stack([mc.normal.standard_normal((b, 6)) for mc in machines])  # (m, b, 6)
    uniform = np.stack([mc.uniform.random((b, 2)) for mc in machines])  # (m, b, 2)
    drifted = np.broadcast_to(steps >= spec.onset, (m, b)) if spec.scenario != Scenario.none else None

    def active(scenario: Scenario) -> np.ndarray | None:
        return drifted if spec.scenario == scenario else None

    # Temperatures: two correlated mean-reverting random walks.
    air_dev = _walk(machines, "air_dev", normal[..., _N_AIR], _PHI_AIR, AIR_SD_K)
    dt_dev = _walk(machines, "dt_dev", normal[..., _N_DT], _PHI_DT, 1.0)
    delta_t = (
        DELTA_T_MEAN_K
        + AIR_DELTA_T_CORR * DELTA_T_SD_K * air_dev / AIR_SD_K
        + math.sqrt(1 - AIR_DELTA_T_CORR**2) * DELTA_T_SD_K * dt_dev
    )
    if (mask := active(Scenario.cooling_degradation)) is not None:
        delta_t = delta_t - COOLING_LOSS_K * mask
    air_k = np.round(AIR_MEAN_K + air_dev, 1)
    process_k = np.round(AIR_MEAN_K + air_dev + delta_t, 1)

    # Product types, then tool wear (which follows the type of the previous product).
    shares = np.array([TYPE_SHARES[t] for t in schema.PRODUCT_TYPES])
    type_idx = np.searchsorted(np.cumsum(shares)[:-1], uniform[..., _U_TYPE], side="right")
    if (mask := active(Scenario.product_mix)) is not None:
        drifted_shares = np.array([DRIFTED_TYPE_SHARES[t] for t in schema.PRODUCT_TYPES])
        drifted_idx = np.searchsorted(np.cumsum(drifted_shares)[:-1], uniform[..., _U_TYPE], side="right")
        type_idx = np.where(mask, drifted_idx, type_idx)
    increments = _WEAR_INC[type_idx].astype(float)
    if (mask := active(Scenario.wear_acceleration)) is not None:
        increments = np.where(mask, increments * WEAR_FACTOR, increments)
    wear_parts = [mc.wear_block(increments[i]) for i, mc in enumerate(machines)]
    tool_wear = np.stack([w for w, _, _ in wear_parts])
    twf = np.stack([t for _, _, t in wear_parts])

    # Torque per product; speed tied to torque (constant-power-like curve plus noise).
    torque = np.round(np.maximum(0.0, TORQUE_MEAN_NM + TORQUE_SD_NM * normal[..., _N_TORQUE]), 1)
    base_speed = np.minimum(SPEED_A / np.maximum(torque, 1e-9) + SPEED_B_RPM, SPEED_CAP_RPM)
    speed = np.round(base_speed * np.exp(SPEED_LOG_SD * normal[..., _N_SPEED]))

    # Failure modes from the true state of the machine.
    power = schema.power_w(torque, speed)
    hdf = ((process_k - air_k) < schema.HDF_MAX_DELTA_T_K) & (speed < schema.HDF_MAX_SPEED_RPM)
    pwf = (power < schema.PWF_MIN_POWER_W) | (power > schema.PWF_MAX_POWER_W)
    osf = tool_wear * torque > _OSF_LIMIT[type_idx]
    rnf = uniform[..., _U_RNF] < RNF_PROBABILITY
    failure = twf | hdf | pwf | osf | rnf

    # What the sensors report: the true state unless a sensor scenario distorts it.
    torque_read, speed_read = torque, speed
    if (mask := active(Scenario.sensor_bias)) is not None:
        torque_read = np.where(mask, np.round(torque * SENSOR_BIAS_FACTOR, 1), torque)
    if (mask := active(Scenario.noisy_sensors)) is not None:
        extra = math.sqrt(NOISE_FACTOR**2 - 1)  # independent extra noise that doubles the sd
        noisy_torque = np.round(
            np.maximum(0.0, torque + extra * TORQUE_SD_NM * normal[..., _N_TORQUE_NOISE]), 1
        )
        noisy_speed = np.round(speed * np.exp(extra * SPEED_LOG_SD * normal[..., _N_SPEED_NOISE]))
        torque_read = np.where(mask, noisy_torque, torque)
        speed_read = np.where(mask, noisy_speed, speed)

    def rows(values: np.ndarray) -> np.ndarray:
        return values.T.ravel()  # (machines, steps) → step-major rows

    seq = np.repeat(steps, m)
    timestamps = pd.to_datetime(start_us + seq * interval_us, unit="us", utc=True)
    flags = {
        "machine_failure": failure,
        "twf": twf,
        "hdf": hdf,
        "pwf": pwf,
        "osf": osf,
        "rnf": rnf,
    }
    frame = pd.DataFrame(
        {
            "machine_id": np.tile(ids, b),
            "seq": seq.astype(np.int64),
            "timestamp": timestamps,
            "product_type": _TYPES[rows(type_idx)],
            "air_temperature_k": rows(air_k),
            "process_temperature_k": rows(process_k),
            "rotational_speed_rpm": rows(speed_read),
            "torque_nm": rows(torque_read),
            "tool_wear_min": rows(tool_wear),
            **{name: rows(flag).astype(np.int8) for name, flag in flags.items()},
        }
    )
    return frame


def _walk(machines: list[_Machine], attr: str, shocks: np.ndarray, phi: float, sd: float) -> np.ndarray:
    """Advance one AR(1) random walk per machine over the block; the state carries over."""
    innovation = sd * math.sqrt(1 - phi**2)
    previous = np.array([getattr(mc, attr) for mc in machines])
    path, _ = lfilter([1.0], [1.0, -phi], innovation * shocks, axis=1, zi=(phi * previous)[:, None])
    for mc, last in zip(machines, path[:, -1], strict=True):
        setattr(mc, attr, last)
    return path


def paced(
    chunks: Iterator[pd.DataFrame],
    rate: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[pd.DataFrame]:
    """Re-slice chunks into small batches released at `rate` readings per second on average.

    Batches hold about 1/20 s of readings, so a consumer sees a steady stream, not bursts.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"--rate must be a positive number of readings per second, got {rate}")
    batch = max(1, math.ceil(rate / 20))
    started = clock()
    released = 0
    for chunk in chunks:
        for first in range(0, len(chunk), batch):
            due = started + released / rate
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            part = chunk.iloc[first : first + batch]
            released += len(part)
            yield part
