"""Features, targets and leakage-free splits.

Physics features come from the AI4I failure mechanisms: the temperature difference that drives
heat dissipation, mechanical power, and tool strain relative to the overstrain limit of the
product type. They are computed by a scikit-learn transformer, so the fitted model (features,
normalisation, classifier) takes contract readings as they arrive. The failure labels are
targets only, never features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from predmaint import schema

RAW_FEATURES: tuple[str, ...] = (
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
PHYSICS_FEATURES: tuple[str, ...] = ("delta_t_k", "power_w", "strain_min_nm", "strain_ratio")
TYPE_FEATURES: tuple[str, ...] = tuple(f"type_{t}" for t in schema.PRODUCT_TYPES)
FEATURE_HELP: dict[str, str] = {
    "delta_t_k": "process − air temperature (heat dissipation)",
    "power_w": "torque × speed × 2π/60 (power)",
    "strain_min_nm": "tool wear × torque (overstrain)",
    "strain_ratio": "strain ÷ the product type's overstrain limit",
}


class DataError(ValueError):
    """The data cannot be used for training; the message says what is wrong and what to do."""


def physics_matrix(frame: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
    """Raw, physics and product-type features of each reading as one float64 array (numpy only).

    `frame` is a DataFrame or a mapping of column → values (the service's parsed columns).
    Columns in the order RAW_FEATURES, PHYSICS_FEATURES, TYPE_FEATURES. `PhysicsFeatures` and the
    compiled serving path both use it, so training and serving compute the same numbers.
    """
    kinds = np.asarray(frame["product_type"])
    out = np.empty((len(kinds), len(RAW_FEATURES) + len(PHYSICS_FEATURES) + len(schema.PRODUCT_TYPES)))
    for i, name in enumerate(RAW_FEATURES):
        out[:, i] = np.asarray(frame[name], dtype=np.float64)
    air, process, speed, torque, wear = out[:, : len(RAW_FEATURES)].T
    strain = wear * torque
    limit = np.full(len(kinds), np.nan)
    column = len(RAW_FEATURES) + len(PHYSICS_FEATURES)
    for offset, kind in enumerate(schema.PRODUCT_TYPES):
        is_kind = kinds == kind
        limit[is_kind] = schema.OSF_STRAIN_LIMIT_MIN_NM[kind]
        out[:, column + offset] = is_kind
    physics = (process - air, schema.power_w(torque, speed), strain, strain / limit)
    for offset, values in enumerate(physics):
        out[:, len(RAW_FEATURES) + offset] = values
    return out


class PhysicsFeatures(BaseEstimator, TransformerMixin):
    """Contract readings → model features (raw sensors, physics features, product type, rolling).

    Args:
        rolling_window: when > 0, add per-machine rolling means of torque and speed and the
            step-to-step change of process − air temperature over the last `rolling_window`
            readings (past only, in `seq` order). Needs a machine's recent history in the input.
    """

    def __init__(self, rolling_window: int = 0) -> None:
        """Configure the rolling features (0 turns them off)."""
        self.rolling_window = rolling_window

    def fit(self, frame: pd.DataFrame, y: Any = None) -> PhysicsFeatures:
        """Nothing to learn; remembers the output names."""
        self.feature_names_out_ = np.array(self._names(), dtype=object)
        return self

    def _names(self) -> list[str]:
        names = [*RAW_FEATURES, *PHYSICS_FEATURES, *TYPE_FEATURES]
        if self.rolling_window:
            names += ["torque_nm_rolling", "rotational_speed_rpm_rolling", "delta_t_k_change"]
        return names

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns `transform` returns."""
        return np.array(self._names(), dtype=object)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Compute the features of each reading."""
        missing = [name for name in (*RAW_FEATURES, "product_type") if name not in frame.columns]
        if missing:
            raise DataError(f"readings lack field(s) {', '.join(missing)}")
        base = [*RAW_FEATURES, *PHYSICS_FEATURES, *TYPE_FEATURES]
        out = pd.DataFrame(physics_matrix(frame), columns=base, index=frame.index)
        if self.rolling_window:
            out = out.join(self._rolling(frame, out))
        return out[self._names()]

    def _rolling(self, frame: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
        ordered = frame.assign(_delta_t=out["delta_t_k"]).sort_values(["machine_id", "seq"], kind="stable")
        groups = ordered.groupby("machine_id", sort=False)
        window = self.rolling_window
        rolled = pd.DataFrame(index=ordered.index)
        rolled["torque_nm_rolling"] = groups["torque_nm"].transform(lambda s: s.rolling(window, 1).mean())
        rolled["rotational_speed_rpm_rolling"] = groups["rotational_speed_rpm"].transform(
            lambda s: s.rolling(window, 1).mean()
        )
        rolled["delta_t_k_change"] = groups["_delta_t"].diff(window).fillna(0.0)
        return rolled.loc[frame.index]


def target(frame: pd.DataFrame, horizon: int = 0) -> pd.Series:
    """The label to predict.

    horizon 0: `machine_failure` of the reading itself (the AI4I task). horizon H > 0: a failure
    of the same machine within the next H readings (this one included); the last H readings of
    each machine, whose future is not known yet, get NaN and are left out of training.
    """
    if "machine_failure" not in frame.columns or frame["machine_failure"].isna().all():
        raise DataError("readings carry no machine_failure labels; training needs labelled data")
    labels = frame["machine_failure"].astype("float64")
    if horizon == 0:
        return labels
    if horizon < 0:
        raise DataError(f"training.horizon must be 0 or more, got {horizon}")
    ordered = frame.assign(_y=labels).sort_values(["machine_id", "seq"], kind="stable")
    # Reverse each machine's series so a backward-looking rolling max looks forward in time.
    ahead = ordered.groupby("machine_id", sort=False)["_y"].transform(
        lambda s: s[::-1].rolling(horizon + 1, min_periods=horizon + 1).max()[::-1]
    )
    return ahead.loc[frame.index]


@dataclass(frozen=True)
class Split:
    """Row positions of the three parts of a dataset."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split(
    frame: pd.DataFrame,
    y: pd.Series,
    *,
    method: Literal["time", "stratified"] = "time",
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    horizon: int = 0,
    seed: int = 0,
) -> Split:
    """Split into train / validation / test without leakage.

    `time` (default): by timestamp — the test period is the last `test_fraction` of time, the
    validation period the `validation_fraction` before it, training everything earlier; for
    horizon H > 0 the last H readings of each machine before a boundary are dropped (their labels
    would look into the next period). `stratified`: random, stratified on the label.
    """
    for name, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0 < value < 1:
            raise DataError(f"{name} must be between 0 and 1, got {value}")
    if test_fraction + validation_fraction >= 1:
        raise DataError("test_fraction + validation_fraction must leave rows for training")
    known = np.flatnonzero(y.notna().to_numpy())
    if method == "stratified":
        from sklearn.model_selection import train_test_split

        labels = y.to_numpy()[known]
        rest, test = train_test_split(known, test_size=test_fraction, stratify=labels, random_state=seed)
        rest_labels = y.to_numpy()[rest]
        train, validation = train_test_split(
            rest, test_size=validation_fraction / (1 - test_fraction), stratify=rest_labels, random_state=seed
        )
        return Split(np.sort(train), np.sort(validation), np.sort(test))
    if method != "time":
        raise DataError(f"split method must be 'time' or 'stratified', got {method!r}")
    stamps = pd.to_datetime(frame["timestamp"], utc=True).to_numpy()
    order = np.argsort(stamps, kind="stable")
    n = len(frame)
    test_start = stamps[order[min(n - 1, math.floor(n * (1 - test_fraction)))]]
    validation_start = stamps[order[min(n - 1, math.floor(n * (1 - test_fraction - validation_fraction)))]]
    period = np.where(stamps >= test_start, 2, np.where(stamps >= validation_start, 1, 0))
    if horizon:
        # Drop rows whose horizon window reaches into a later period of the same machine.
        seq = frame["seq"].to_numpy()
        machines = frame["machine_id"].to_numpy()
        boundary = pd.DataFrame({"m": machines, "p": period, "s": seq}).groupby(["m", "p"])["s"].min()
        next_start = np.array(
            [boundary.get((m, p + 1), np.inf) for m, p in zip(machines, period, strict=True)], dtype=float
        )
        period = np.where(seq + horizon >= next_start, -1, period)
    parts = [np.intersect1d(np.flatnonzero(period == p), known) for p in (0, 1, 2)]
    return Split(*parts)
