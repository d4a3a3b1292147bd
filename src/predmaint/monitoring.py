"""Drift checks and the retrain policy. Alibi Detect is the engine, behind this one module.

Alibi Detect 0.11.5 and later are under the Business Source License 1.1 (free for
non-production use; see the README). Only `_tabular_test` and `_ks_test` touch it, so another
engine can replace it here without changes elsewhere; `alibi_detect.cd` is imported lazily
because importing it takes seconds.

A check compares a current window of readings with the champion's reference sample:

- feature drift: Kolmogorov–Smirnov per numeric model feature, Chi² for `product_type`,
  Bonferroni-corrected (alibi-detect `TabularDrift`);
- prediction drift: KS on the champion's failure probabilities, reference vs current;
- performance: recall / F1 / PR-AUC of the champion on the labelled part of the window against
  its own test-time figures.

The policy acts on harm, not on difference: it retrains when the measured performance fell, or
when features the model relies on drifted *and* its predictions moved. Drift without either is
reported only. A cooldown and an idempotency key keep repeated checks of one situation to at most
one retraining run.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predmaint import schema
from predmaint.features import PHYSICS_FEATURES, RAW_FEATURES, physics_matrix

NUMERIC_FEATURES: tuple[str, ...] = (*RAW_FEATURES, *PHYSICS_FEATURES)
DRIFT_FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, "product_type")
MIN_WINDOW = 50
# Columns a prediction-log window carries besides the reading (and p_<mode> for each mode).
PREDICTION_LOG_COLUMNS = {"logged_at", "failure_probability", "failure", "top_features", "model_version"}


class DriftError(ValueError):
    """A window cannot be checked (too small, missing or unknown columns); the message says why."""


@dataclass(frozen=True)
class Policy:
    """When a check asks for retraining."""

    p_value: float = 0.05
    min_effect: float = 0.15  # a drifted feature moved at least this far (KS distance / total variation)
    performance_drop: float = 0.10  # F1 points below the champion's test F1
    min_labelled_failures: int = 5  # evidence needed before performance is judged
    important_share: float = 0.05  # a feature the model relies on: at least this share of importance
    cooldown: timedelta = timedelta(hours=6)


@dataclass
class DriftResult:
    """One check: the decision and everything it was based on (printed as one JSON object)."""

    drift: bool
    features: dict[str, dict[str, Any]]
    prediction_drift: dict[str, Any] | None
    performance: dict[str, Any] | None
    retrain: bool
    reason: str
    reference_rows: int
    current_rows: int
    champion_version: str | None = None
    checked_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    idempotency_key: str | None = None
    triggered_run: str | None = None
    retraining: dict[str, Any] | None = None  # what the triggered run reported (local: the gate's decision)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _check_window(frame: pd.DataFrame, name: str) -> None:
    known = set(schema.FIELD_NAMES) | PREDICTION_LOG_COLUMNS
    unknown = sorted(c for c in frame.columns if c not in known and not c.startswith("p_"))
    if unknown:
        raise DriftError(
            f"{name} window has unknown column(s) {', '.join(unknown)}; expected contract readings"
        )
    missing = [c for c in (*RAW_FEATURES, "product_type") if c not in frame.columns]
    if missing:
        raise DriftError(f"{name} window lacks column(s) {', '.join(missing)}")
    if len(frame) < MIN_WINDOW:
        raise DriftError(f"{name} window has {len(frame)} readings; a check needs at least {MIN_WINDOW}")
    bad = schema.check_frame(frame[[c for c in frame.columns if c in schema.FIELD_NAMES]]) != ""
    if bad.all():
        raise DriftError(f"{name} window holds no valid reading")


def drift_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The monitored features: numeric model features, then product type as a category code."""
    numeric = physics_matrix(frame)[:, : len(NUMERIC_FEATURES)]
    codes = frame["product_type"].map({k: i for i, k in enumerate(schema.PRODUCT_TYPES)}).to_numpy(np.float64)
    return np.column_stack([numeric, codes]).astype(np.float32)


def _quiet_import() -> None:
    # alibi-detect imports transformers, which announces that no deep-learning framework is installed.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _tabular_test(reference: np.ndarray, current: np.ndarray, p_value: float) -> dict[str, Any]:
    _quiet_import()
    from alibi_detect.cd import TabularDrift

    detector = TabularDrift(
        reference,
        p_val=p_value,
        categories_per_feature={len(DRIFT_FEATURES) - 1: len(schema.PRODUCT_TYPES)},
        correction="bonferroni",
    )
    return detector.predict(current, drift_type="batch", return_p_val=True, return_distance=True)["data"]


def _ks_test(reference: np.ndarray, current: np.ndarray, p_value: float) -> dict[str, Any]:
    _quiet_import()
    from alibi_detect.cd import KSDrift

    detector = KSDrift(reference.reshape(-1, 1).astype(np.float32), p_val=p_value)
    return detector.predict(
        current.reshape(-1, 1).astype(np.float32), return_p_val=True, return_distance=True
    )["data"]


def _effects(reference: np.ndarray, current: np.ndarray, ks_distance: np.ndarray) -> np.ndarray:
    """How far each feature moved: KS distance for numeric ones, total variation for the category."""
    effects = np.asarray(ks_distance, dtype=float).copy()
    categories = np.arange(len(schema.PRODUCT_TYPES))
    shares = [np.mean(column[:, None] == categories, axis=0) for column in (reference[:, -1], current[:, -1])]
    effects[-1] = 0.5 * float(np.abs(shares[0] - shares[1]).sum())
    return effects


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, p_value: float = 0.05, min_effect: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Per monitored feature: statistic, p-value, effect and whether it drifted.

    A feature drifted when its test is significant after the Bonferroni correction *and* it
    moved at least `min_effect` (KS distance, or total variation distance of the product-type
    shares). Large windows make tiny, harmless differences significant; the effect floor keeps
    them out of the decision.
    """
    _check_window(reference, "reference")
    _check_window(current, "current")
    ref, cur = drift_matrix(reference), drift_matrix(current)
    data = _tabular_test(ref, cur, p_value)
    threshold = float(data["threshold"])
    effects = _effects(ref, cur, data["distance"])
    out = {}
    for i, name in enumerate(DRIFT_FEATURES):
        p = float(data["p_val"][i])
        out[name] = {
            "test": "chi2" if name == "product_type" else "ks",
            "statistic": round(float(data["distance"][i]), 6),
            "p_value": p,
            "effect": round(float(effects[i]), 6),
            "drifted": bool(p < threshold and effects[i] >= min_effect),
        }
    return out


def prediction_drift(
    reference_proba: np.ndarray, current_proba: np.ndarray, p_value: float = 0.05
) -> dict[str, Any]:
    """KS test on the distribution of predicted failure probabilities."""
    data = _ks_test(np.asarray(reference_proba), np.asarray(current_proba), p_value)
    return {
        "statistic": round(float(np.ravel(data["distance"])[0]), 6),
        "p_value": float(np.ravel(data["p_val"])[0]),
        "drifted": bool(data["is_drift"]),
        "reference_mean": round(float(np.mean(reference_proba)), 6),
        "current_mean": round(float(np.mean(current_proba)), 6),
    }


def performance(bundle: Any, current: pd.DataFrame, policy: Policy) -> dict[str, Any] | None:
    """The champion's figures on the labelled readings of the window, beside its test figures."""
    from predmaint.model import predict_readings
    from predmaint.training import metrics

    if "machine_failure" not in current.columns:
        return None
    labelled = current[current["machine_failure"].notna()]
    if labelled.empty:
        return None
    y = labelled["machine_failure"].astype(int).to_numpy()
    proba = predict_readings(bundle, labelled, explain=False)["failure_probability"].to_numpy()
    found = metrics(y, proba, bundle.threshold) if 0 < y.sum() < len(y) else {}
    test = bundle.metadata.get("test", {})
    result = {
        "labelled": int(len(labelled)),
        "failures": int(y.sum()),
        "f1": found.get("f1"),
        "recall": found.get("recall"),
        "pr_auc": found.get("pr_auc"),
        "test_f1": test.get("f1"),
        "test_recall": test.get("recall"),
        "test_pr_auc": test.get("pr_auc"),
        "enough_evidence": bool(y.sum() >= policy.min_labelled_failures),
    }
    result["dropped"] = bool(
        result["enough_evidence"]
        and result["f1"] is not None
        and result["test_f1"] is not None
        and result["test_f1"] - result["f1"] > policy.performance_drop
    )
    return result


def relied_on(bundle: Any, policy: Policy) -> set[str]:
    """Monitored features that carry at least `important_share` of the model's importance."""
    classifier = bundle.model.named_steps["model"]
    names = list(bundle.model.named_steps["features"].get_feature_names_out())
    importance = np.asarray(getattr(classifier, "feature_importances_", np.ones(len(names))), dtype=float)
    share = importance / importance.sum() if importance.sum() > 0 else importance
    important = {name for name, s in zip(names, share, strict=True) if s >= policy.important_share}
    if any(name.startswith("type_") for name in important):
        important.add("product_type")
    return important & set(DRIFT_FEATURES)


def decide(
    features: dict[str, dict[str, Any]],
    predictions: dict[str, Any] | None,
    perf: dict[str, Any] | None,
    important: set[str] | None,
) -> tuple[bool, bool, str]:
    """(drift, retrain, reason) from the three kinds of evidence."""
    drifted = [name for name, f in features.items() if f["drifted"]]
    drift = bool(drifted) or bool(predictions and predictions["drifted"])
    if perf and perf["dropped"]:
        return (
            drift,
            True,
            f"performance fell: F1 {perf['f1']:.3f} on {perf['labelled']} labelled readings "
            f"vs {perf['test_f1']:.3f} at test time",
        )
    if not drift:
        return False, False, "no drift"
    harmful = [name for name in drifted if important is None or name in important]
    moved = bool(predictions and predictions["drifted"])
    if harmful and moved:
        return (
            True,
            True,
            f"features the model relies on drifted ({', '.join(harmful)}) and its predictions moved",
        )
    if drifted and not harmful:
        return True, False, f"drift in features the model barely uses ({', '.join(drifted)}); reported only"
    if harmful:
        return (
            True,
            False,
            f"features drifted ({', '.join(harmful)}) but the predictions did not move; reported only",
        )
    return True, False, "the predictions moved without feature drift; reported only"


def situation_key(
    champion_version: str | None, features: dict[str, dict[str, Any]], perf: dict[str, Any] | None
) -> str:
    """Same champion, same drifted features, same performance verdict: the same situation."""
    drifted = sorted(name for name, f in features.items() if f["drifted"])
    text = json.dumps([champion_version, drifted, bool(perf and perf["dropped"])])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RetrainGuard:
    """Cooldown and idempotency of retraining, kept in a small JSON state file beside its lock file."""

    def __init__(self, path: Path, cooldown: timedelta) -> None:
        """Use the state at `path` (created on first trigger)."""
        self.path = Path(path)
        self.cooldown = cooldown

    def _state(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"triggers": []}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DriftError(f"{self.path}: unreadable retrain state ({exc}); fix or remove it") from None

    def blocked(self, key: str, now: datetime) -> str | None:
        """Why a retraining for `key` must not start now, or None when it may."""
        triggers = self._state()["triggers"]
        for trigger in triggers:
            if trigger["key"] == key:
                return f"already triggered for this situation at {trigger['at']} (run {trigger['run']})"
        if triggers:
            last = datetime.fromisoformat(triggers[-1]["at"])
            if now - last < self.cooldown:
                return f"cooldown: the last retraining started at {triggers[-1]['at']} ({self.cooldown})"
        return None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the guard's file lock: one check at a time, across processes, decides and records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start_once(self, key: str, now: datetime, start: Callable[[], str]) -> tuple[str | None, str | None]:
        """Call `start` (which starts a run and returns its id) unless the guard blocks `key`.

        The lock is held from the check to the record, so two checks of the same situation, in any
        two processes, start one run between them. Returns (why blocked, None) or (None, run id).
        """
        with self.held():
            blocked = self.blocked(key, now)
            if blocked:
                return blocked, None
            run = start()
            self.record(key, run, now)
            return None, run

    def record(self, key: str, run: str, now: datetime) -> None:
        """Remember a started retraining."""
        state = self._state()
        state["triggers"].append({"key": key, "run": run, "at": now.isoformat(timespec="seconds")})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(self.path)


def _reference_probabilities(bundle: Any, reference: pd.DataFrame) -> np.ndarray:
    """The champion's probabilities on the reference readings, logged ones if the window has them."""
    from predmaint.model import predict_readings

    if "failure_probability" in reference.columns:
        logged = pd.to_numeric(reference["failure_probability"], errors="coerce").to_numpy(np.float64)
        if np.isfinite(logged).all():
            return logged
    return predict_readings(bundle, reference, explain=False)["failure_probability"].to_numpy()


def check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    bundle: Any = None,
    champion_version: str | None = None,
    policy: Policy | None = None,
    reference_probabilities: np.ndarray | None = None,
) -> DriftResult:
    """Compare a current window with the reference; with a model, judge predictions and performance.

    Prediction drift compares the model's probabilities on the current window with
    `reference_probabilities`: its probabilities on held-out readings, logged with the champion.
    Without them it predicts on the reference readings — biased when those are its training
    readings, on which a model is more confident than on anything new.
    """
    from predmaint.model import predict_readings

    policy = policy or Policy()
    features = feature_drift(reference, current, policy.p_value, policy.min_effect)
    predictions = perf = important = None
    if bundle is not None:
        ref_proba = (
            np.asarray(reference_probabilities)
            if reference_probabilities is not None
            else _reference_probabilities(bundle, reference)
        )
        cur_proba = predict_readings(bundle, current, explain=False)["failure_probability"].to_numpy()
        predictions = prediction_drift(ref_proba, cur_proba, policy.p_value)
        perf = performance(bundle, current, policy)
        important = relied_on(bundle, policy)
    drift, retrain, reason = decide(features, predictions, perf, important)
    if bundle is None and drift:
        reason = "features drifted; no model given, so no retrain decision"
    return DriftResult(
        drift=drift,
        features=features,
        prediction_drift=predictions,
        performance=perf,
        retrain=retrain and bundle is not None,
        reason=reason,
        reference_rows=len(reference),
        current_rows=len(current),
        champion_version=champion_version,
        idempotency_key=situation_key(champion_version, features, perf),
    )


def _histogram_svg(reference: np.ndarray, current: np.ndarray, bins: int = 30) -> str:
    """Two overlaid histograms (share of readings per bin) as a small inline SVG."""
    low, high = (
        float(np.nanmin([reference.min(), current.min()])),
        float(np.nanmax([reference.max(), current.max()])),
    )
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    ref = np.histogram(reference, edges)[0] / max(len(reference), 1)
    cur = np.histogram(current, edges)[0] / max(len(current), 1)
    top = max(ref.max(), cur.max(), 1e-9)
    width, height, step = 300, 80, 300 / bins
    bars = []
    for i, (r, c) in enumerate(zip(ref, cur, strict=True)):
        for value, colour, offset in ((r, "#5b8def", 0.0), (c, "#e07b00", step / 2)):
            h = value / top * height
            bars.append(
                f'<rect x="{i * step + offset:.1f}" y="{height - h:.1f}" width="{step / 2:.1f}" '
                f'height="{h:.1f}" fill="{colour}"/>'
            )
    return (
        f'<svg width="{width}" height="{height + 14}" role="img">{"".join(bars)}'
        f'<text x="0" y="{height + 12}" font-size="10">{low:.4g}</text>'
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{high:.4g}</text></svg>'
    )


def render_report(result: DriftResult, reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """An HTML page: decision, reason, and per feature the two distributions and the test."""
    from html import escape

    ref, cur = drift_matrix(reference), drift_matrix(current)
    rows = []
    for i, (name, feature) in enumerate(result.features.items()):
        mark = "drifted" if feature["drifted"] else "ok"
        rows.append(
            f'<tr class="{mark}"><td>{escape(name)}</td><td>{feature["test"]}</td>'
            f"<td>{feature['statistic']:.4f}</td><td>{feature['p_value']:.3g}</td><td>{mark}</td>"
            f"<td>{_histogram_svg(ref[:, i], cur[:, i])}</td></tr>"
        )
    extra = []
    if result.prediction_drift:
        pdrift = result.prediction_drift
        extra.append(
            f"<p>Prediction drift: KS {pdrift['statistic']:.4f}, p = {pdrift['p_value']:.3g} "
            f"({'drifted' if pdrift['drifted'] else 'ok'}); mean failure probability "
            f"{pdrift['reference_mean']:.4f} → {pdrift['current_mean']:.4f}</p>"
        )
    if result.performance:
        perf = result.performance
        extra.append(f"<p>Performance on labelled readings: {escape(json.dumps(perf))}</p>")
    verdict = "retrain" if result.retrain else ("drift, reported only" if result.drift else "no drift")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>predmaint drift check</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433}}table{{border-collapse:collapse}}
td,th{{padding:.3rem .6rem;border-bottom:1px solid #e3e7ee;text-align:left}}
tr.drifted td{{background:#fdecea}}
.legend span{{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem}}</style></head><body>
<h1>Drift check: {verdict}</h1>
<p id="reason">{escape(result.reason)}</p>
<p>Reference: {result.reference_rows} readings; current: {result.current_rows} readings; champion:
{escape(str(result.champion_version))}; checked at {result.checked_at}.</p>
{"".join(extra)}
<p class="legend"><span style="background:#5b8def"></span>reference
<span style="background:#e07b00"></span>current</p>
<table><tr><th>feature</th><th>test</th><th>statistic</th><th>p-value</th><th>verdict</th><th>distribution</th></tr>
{"".join(rows)}</table></body></html>
"""
