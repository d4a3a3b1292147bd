"""Quality of the drift check: false alarms, detection per scenario, delay, and how often it retrains.

Every check is `predmaint.monitoring.check` with a champion trained by the recipe (so feature
drift, prediction drift and, where labels exist, performance all count), windows of 1,000
readings against the champion's 3,000-reading reference sample:

1. independent windows: 20 windows drawn at random from the AI4I file (shuffled: no drift) and
   from a simulated fleet after the onset of each scenario (and of none);
2. a stream: consecutive windows of a fleet through the onset of each scenario, counting false
   alarms before it and the windows until the first alarm after it;
3. time-ordered AI4I: a champion trained on the first 3,000 readings, checked on 20 windows
   spread over the rest, with labels — how often `retrain` fires, and whether the champion's
   F1 had really fallen there.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import NamedTuple

import numpy as np
import pandas as pd

from predmaint.datasets import load_ai4i
from predmaint.model import Bundle
from predmaint.monitoring import DriftResult, check
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec, simulate
from predmaint.training import TrainingConfig, fit

WINDOW = 1000
WINDOWS = 20
MACHINES = 100
ONSET = 200  # steps of the fleet before the scenario starts (20,000 readings)
AFTER = 200  # steps after it
TRIALS = 4
SEED = 7


class Champion(NamedTuple):
    """A model with what the registry keeps for its drift checks."""

    bundle: Bundle
    reference: pd.DataFrame
    probabilities: np.ndarray  # on its held-out test readings

    def check(self, window: pd.DataFrame) -> DriftResult:
        """The drift check of `window` against this champion."""
        return check(
            self.reference,
            window,
            bundle=self.bundle,
            champion_version="1",
            reference_probabilities=self.probabilities,
        )


def _champion(frame: pd.DataFrame, split: str) -> Champion:
    """The recipe's champion on `frame` (XGBoost, a short search) and its drift references."""
    trained = fit(frame, TrainingConfig(trials=TRIALS, families=("xgboost",), split=split), with_modes=False)
    bundle = Bundle(trained.model, trained.threshold, {}, trained.family, {"test": trained.test})
    return Champion(bundle, trained.reference, trained.reference_probabilities)


def _fleet(scenario: Scenario) -> pd.DataFrame:
    spec = SimulationSpec(MACHINES, ONSET + AFTER, seed=SEED, scenario=scenario, onset=ONSET)
    return pd.concat(simulate(spec), ignore_index=True)


def _drifted(result: DriftResult) -> list[str]:
    names = [name for name, feature in result.features.items() if feature["drifted"]]
    if result.prediction_drift and result.prediction_drift["drifted"]:
        names.append("predictions")
    return names


def _rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({hits / total:.0%})"


def _independent(champion: Champion, pools: dict[str, pd.DataFrame]) -> list[str]:
    rng = np.random.default_rng(SEED)
    lines = [
        "| windows drawn from | kind | `drift` fired | `retrain` fired | features flagged most often |",
        "|---|---|---:|---:|---|",
    ]
    for label, pool in pools.items():
        drift = retrain = 0
        flagged: Counter[str] = Counter()
        for _ in range(WINDOWS):
            window = pool.iloc[np.sort(rng.choice(len(pool), WINDOW, replace=False))]
            result = champion.check(window)
            drift += result.drift
            retrain += result.retrain
            flagged.update(_drifted(result))
        kind = "no drift: false alarms" if "none" in label or "shuffled" in label else "detection"
        common = ", ".join(f"{name} {count}" for name, count in flagged.most_common(4)) or "—"
        lines.append(f"| {label} | {kind} | {_rate(drift, WINDOWS)} | {_rate(retrain, WINDOWS)} | {common} |")
        print(
            f"    {label}: drift {drift}/{WINDOWS}, retrain {retrain}/{WINDOWS}", file=sys.stderr, flush=True
        )
    return lines


def _stream(champion: Champion, fleets: dict[Scenario, pd.DataFrame]) -> list[str]:
    per_window = WINDOW // MACHINES  # steps per window: every machine reports once per step
    lines = [
        f"| scenario | false alarms before onset | first alarm after onset (windows of {WINDOW}) "
        "| alarms after onset | `retrain` after onset | largest feature effect before onset "
        "| largest feature effect after onset (median of windows) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario, fleet in fleets.items():
        before = after = retrain = 0
        first: int | None = None
        effects: dict[bool, list[float]] = {False: [], True: []}
        for index, start in enumerate(range(0, ONSET + AFTER, per_window)):
            window = fleet[(fleet["seq"] >= start) & (fleet["seq"] < start + per_window)]
            result = champion.check(window)
            effects[start >= ONSET].append(max(f["effect"] for f in result.features.values()))
            if start < ONSET:
                before += result.drift
                continue
            after += result.drift
            retrain += result.retrain
            if result.drift and first is None:
                first = index - ONSET // per_window + 1
        windows = AFTER // per_window
        lines.append(
            f"| {scenario} | {_rate(before, ONSET // per_window)} | {first if first else '—'} "
            f"| {_rate(after, windows)} | {_rate(retrain, windows)} | {max(effects[False]):.3f} "
            f"| {np.median(effects[True]):.3f} |"
        )
        print(
            f"    stream {scenario}: before {before}, after {after}, first {first}",
            file=sys.stderr,
            flush=True,
        )
    return lines


def _time_ordered(frame: pd.DataFrame) -> list[str]:
    history = frame.iloc[:3000]
    champion = _champion(history, "time")
    test_f1 = champion.bundle.metadata["test"]["f1"]
    lines = [
        f"Champion: XGBoost trained on readings 1–3,000 (time split inside them), test F1 {test_f1:.3f}.",
        "",
        "| readings | features drifted | predictions drifted | F1 (failures) "
        "| `drift` | `retrain` | reason |",
        "|---|---|---|---:|---|---|---|",
    ]
    starts = np.linspace(3000, len(frame) - WINDOW, WINDOWS).astype(int)
    fired = 0
    for start in starts:
        window = frame.iloc[start : start + WINDOW]
        result = champion.check(window)
        fired += result.retrain
        perf = result.performance or {}
        f1 = perf.get("f1")
        features = [name for name in _drifted(result) if name != "predictions"]
        moved = "yes" if result.prediction_drift and result.prediction_drift["drifted"] else "no"
        lines.append(
            f"| {start + 1}–{start + WINDOW} | {', '.join(features) or '—'} | {moved} "
            f"| {'—' if f1 is None else f'{f1:.3f}'} ({perf.get('failures', 0)}) | {result.drift} "
            f"| {result.retrain} | {result.reason} |"
        )
    lines += ["", f"`retrain` fired in {_rate(fired, len(starts))} time-ordered windows."]
    print(f"    time-ordered AI4I: retrain {fired}/{len(starts)}", file=sys.stderr, flush=True)
    return lines


def run() -> tuple[str, list[str]]:
    """Train the two champions, run the three experiments, return the report section."""
    started = time.perf_counter()
    ai4i = load_ai4i()
    shuffled = ai4i.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    print("  training the AI4I champion (shuffled file) …", file=sys.stderr, flush=True)
    ai4i_champion = _champion(shuffled.iloc[:5000], "stratified")
    fleets = {scenario: _fleet(scenario) for scenario in Scenario}
    print("  training the fleet champion (steps before the onset) …", file=sys.stderr, flush=True)
    before = fleets[Scenario.none]
    fleet_champion = _champion(before[before["seq"] < ONSET], "stratified")

    pools = {"AI4I, shuffled (readings 5,001–10,000)": shuffled.iloc[5000:]}
    for scenario, fleet in fleets.items():
        pools[f"fleet after onset: {scenario}"] = fleet[fleet["seq"] >= ONSET]
    lines = [
        f"`predmaint.monitoring.check` with a champion (XGBoost, recipe with {TRIALS} trials), windows "
        f"of {WINDOW:,} readings against its reference: 3,000 training readings for the features, "
        "its probabilities on its held-out test readings for the predictions (p = 0.05, effect ≥ 0.15). "
        f"Fleet: {MACHINES} machines, scenario from step {ONSET} of {ONSET + AFTER} (seed {SEED}).",
        "",
        f"### Independent windows ({WINDOWS} per row, drawn at random)",
        "",
    ]
    ai4i_lines = _independent(ai4i_champion, {k: v for k, v in pools.items() if "AI4I" in k})
    fleet_lines = _independent(fleet_champion, {k: v for k, v in pools.items() if "AI4I" not in k})
    lines += ai4i_lines + fleet_lines[2:]
    lines += ["", "### A stream through the onset (consecutive windows of the fleet)", ""]
    lines += _stream(fleet_champion, fleets)
    lines += ["", "### Time-ordered AI4I (labels known): does it retrain only where it should?", ""]
    lines += _time_ordered(ai4i)
    lines += ["", f"Whole benchmark: {time.perf_counter() - started:.0f} s."]
    return "Drift detection", lines
