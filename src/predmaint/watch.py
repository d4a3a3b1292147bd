"""One scheduled drift check end to end: inputs, champion, decision, guard, trigger, report, log.

`predmaint drift check` (and the CronJob) call `run_check`. Detection and the policy live in
`predmaint.monitoring`; this module finds the data and acts on the decision.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from predmaint.monitoring import DriftError, DriftResult, Policy, RetrainGuard, check, render_report

log = logging.getLogger(__name__)

Trigger = Literal["none", "local", "kfp"]


def _read(path: Path) -> pd.DataFrame:
    from predmaint.datasets import read_readings

    return read_readings(path)


def champion(settings: Any) -> tuple[Any, str, str] | None:
    """(bundle, version, run id) of the registry's champion, or None when there is none yet."""
    from predmaint.registry import CHAMPION, alias_version, load_version, prepare_tracking

    uri = prepare_tracking(settings.mlflow.tracking_uri)
    version = alias_version(uri, settings.mlflow.model_name, CHAMPION)
    if version is None:
        return None
    from mlflow import MlflowClient

    run_id = MlflowClient(uri, uri).get_model_version(settings.mlflow.model_name, version).run_id
    return load_version(uri, settings.mlflow.model_name, version), version, run_id


def champion_reference(settings: Any, run_id: str) -> tuple[pd.DataFrame, Any]:
    """The reference sample logged with the champion, and its probabilities on held-out readings."""
    import mlflow

    uri = settings.mlflow.tracking_uri
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reference", tracking_uri=uri)
    )
    probabilities = local / "probabilities.parquet"
    held_out = (
        pd.read_parquet(probabilities)["failure_probability"].to_numpy() if probabilities.is_file() else None
    )
    return pd.read_parquet(local / "reference.parquet"), held_out


def latest_window(settings: Any) -> pd.DataFrame:
    """The newest `drift.window` readings of the prediction log (or, without a log, of the store).

    Labels of logged readings come from the store, joined on (machine_id, seq): only
    authenticated ingestion writes there, while anyone who reaches `/predict` writes the log.
    """
    from predmaint.ingest.store import read_store
    from predmaint.predlog import read_predictions

    size = settings.drift.window
    if settings.serving.prediction_log is not None:
        logged = read_predictions(settings.serving.prediction_log, newest=size)
        if len(logged):
            window = logged.tail(size).reset_index(drop=True)
            return with_store_labels(window, settings.ingest.store)
    store = read_store(settings.ingest.store)
    if len(store) == 0:
        raise DriftError("no current readings: the prediction log and the store are empty; pass --current")
    return store.sort_values("timestamp", kind="stable").tail(size).reset_index(drop=True)


def with_store_labels(window: pd.DataFrame, store_root: Path) -> pd.DataFrame:
    """The window without any labels of its own, with the store's labels of the same readings."""
    from predmaint.ingest.store import StoreError, read_store
    from predmaint.schema import LABEL_FIELDS

    window = window.drop(columns=[name for name in LABEL_FIELDS if name in window.columns])
    if window.empty or not {"machine_id", "seq"} <= set(window.columns):
        return window
    try:
        labels = read_store(store_root, ["machine_id", "seq", *LABEL_FIELDS])
    except (StoreError, OSError, ValueError) as exc:
        log.warning("drift: no labels from the store %s (%s); performance is not judged", store_root, exc)
        return window
    labels = labels[labels["machine_failure"].notna()]
    if labels.empty:
        return window

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        seq = pd.to_numeric(frame["seq"], errors="coerce").astype("Int64")
        return frame.assign(seq=seq, machine_id=frame["machine_id"].astype(object))

    return keyed(window).merge(keyed(labels), on=["machine_id", "seq"], how="left")


def _trigger(kind: Trigger, settings: Any) -> dict[str, Any]:
    """Start one retraining on the newest data version; returns at least its `run_id`.

    `local` runs the pipeline here through kfp.local and returns the promotion decision too;
    `kfp` submits a run to the KFP API and returns at once.
    """
    from predmaint.retrain import latest_snapshot, run_local, submit

    version = latest_snapshot(settings.ingest.store)
    if kind == "local":
        decision = run_local(version, settings.ingest.store, settings.state_dir / "kfp")
        return {"run_id": f"local:{version[:12]}", "data_version": version, **decision}
    if not settings.drift.kfp_host:
        raise DriftError("--trigger kfp needs drift.kfp_host (PREDMAINT_DRIFT__KFP_HOST), the KFP API URL")
    run_id = submit(
        settings.drift.kfp_host,
        settings.drift.kfp_experiment,
        version,
        "/data/store",
        namespace=settings.drift.kfp_namespace or None,
    )
    return {"run_id": run_id, "data_version": version}


def _nothing_to_check(settings: Any) -> DriftResult:
    """The result (and JSON log line) of a check while the registry has no champion."""
    result = DriftResult(
        drift=False,
        features={},
        prediction_drift=None,
        performance=None,
        retrain=False,
        reason=(
            f"no champion of {settings.mlflow.model_name!r} in the registry yet: nothing to check; "
            "the first training run registers one"
        ),
        reference_rows=0,
        current_rows=0,
    )
    _log(result)
    return result


def _log(result: DriftResult, **extra: str) -> None:
    """The check's one JSON log line on stderr (what `kubectl logs` shows of the CronJob)."""
    line = {k: v for k, v in result.as_dict().items() if k != "features"}
    line["drifted_features"] = [name for name, f in result.features.items() if f["drifted"]]
    print(json.dumps({"event": "drift_check", **line, **extra}), file=sys.stderr, flush=True)


def run_check(
    settings: Any,
    *,
    reference_path: Path | None = None,
    current_path: Path | None = None,
    use_model: bool = True,
    trigger: Trigger = "none",
    report_path: Path | None = None,
    now: datetime | None = None,
) -> DriftResult:
    """Check, decide, guard, trigger at most one retraining, write the report and one JSON log line."""
    now = now or datetime.now(UTC)
    found = champion(settings) if use_model else None
    bundle, version, run_id = found if found else (None, None, None)
    reference_probabilities = None
    if reference_path is not None:
        reference = _read(reference_path)
    elif run_id is not None:
        reference, reference_probabilities = champion_reference(settings, run_id)
    elif use_model:
        # A scheduled check before the first training run: nothing to compare with yet. That is
        # a normal state of a new installation, not a failed job.
        return _nothing_to_check(settings)
    else:
        raise DriftError(
            "no reference: pass --reference, or register a champion (its training sample is used)"
        )
    current = _read(current_path) if current_path is not None else latest_window(settings)
    policy = Policy(
        p_value=settings.drift.p_value,
        min_effect=settings.drift.min_effect,
        performance_drop=settings.drift.performance_drop,
        min_labelled_failures=settings.drift.min_labelled_failures,
        cooldown=timedelta(hours=settings.drift.cooldown_hours),
    )
    result = check(
        reference,
        current,
        bundle=bundle,
        champion_version=version,
        policy=policy,
        reference_probabilities=reference_probabilities,
    )
    if result.retrain:
        guard = RetrainGuard(settings.state_dir / "drift" / "retrain-state.json", policy.cooldown)
        blocked = guard.blocked(result.idempotency_key, now)
        if not blocked and trigger != "none":

            def start() -> str:
                result.retraining = _trigger(trigger, settings)
                return str(result.retraining["run_id"])

            blocked, result.triggered_run = guard.start_once(result.idempotency_key, now, start)
        if blocked:
            result.retrain = False
            result.reason += f"; not retraining: {blocked}"
    target = report_path or settings.state_dir / "drift" / f"report-{now.strftime('%Y%m%dT%H%M%S')}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_report(result, reference, current), encoding="utf-8")
    _log(result, report=str(target))
    return result
