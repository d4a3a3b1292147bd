"""The training pipeline's stages as plain functions on paths.

Each KFP component and each `dvc.yaml` stage calls exactly one of these; they read and write
ordinary files (Parquet, JSON, a joblib bundle), so the same stage runs under `kfp.local`, in a
cluster pod, under `dvc repro` or from a test.

    pull_data → validate_data → preprocess → tune → train → evaluate → register → live_test → promote
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from predmaint import schema
from predmaint.features import DataError, split, target
from predmaint.training import TrainingConfig, TuningResult

log = logging.getLogger(__name__)
TARGET = "target"
PARTS = ("train", "validation", "test", "live")
REFERENCE_PROBABILITIES = "reference_probabilities.parquet"


def _write_json(path: str | Path, data: dict[str, Any]) -> dict[str, Any]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return data


def _read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_readings_dir(path: str | Path) -> pd.DataFrame:
    """Readings from a store's `readings/` directory (Hive-partitioned Parquet) or one file."""
    import pyarrow.dataset as ds

    from predmaint.datasets import read_readings

    path = Path(path)
    if path.is_file():
        return read_readings(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such readings directory or file")
    files = sorted(str(p) for p in path.rglob("*.parquet"))
    if not files:
        raise DataError(f"{path} holds no Parquet files; the dataset is empty")
    table = ds.dataset(files, schema=schema.arrow_schema(), format="parquet").to_table()
    return table.to_pandas()


# --- stages ----------------------------------------------------------------------------------
def _settings() -> Any:
    from predmaint.config import load_settings

    return load_settings()


def pull_data(store: str, rev: str, out_dir: str, remote: Any = None) -> dict[str, Any]:
    """Restore the readings of data version `rev` (a snapshot commit of the store) into `out_dir`."""
    from predmaint.versioning import VersioningError, pull, remote_config

    if remote is None:
        data = _settings().data
        remote = remote_config(
            data.remote,
            gdrive_service_account_json=data.gdrive_service_account_json,
            s3_endpoint_url=data.s3_endpoint_url,
            s3_profile=data.s3_profile,
        )
    if not rev:
        raise DataError("no data version given; run `predmaint snapshot` and pass its commit")
    try:
        return pull(store, rev, out_dir, remote)
    except VersioningError as exc:
        raise DataError(f"data version {rev!r}: {exc}") from None


def validate_data(readings_dir: str, report_path: str) -> dict[str, Any]:
    """Check the dataset before training: contract-valid, labelled, both classes present."""
    frame = read_readings_dir(readings_dir)
    if frame.empty:
        raise DataError(f"{readings_dir}: the dataset is empty")
    reasons = schema.check_frame(frame)
    invalid = int((reasons != "").sum())
    if invalid:
        raise DataError(
            f"{readings_dir}: {invalid} reading(s) break the contract, e.g. {reasons[reasons != ''].iloc[0]}"
        )
    labels = frame["machine_failure"].dropna() if "machine_failure" in frame else pd.Series(dtype=float)
    if labels.empty:
        raise DataError(f"{readings_dir}: no machine_failure labels; training needs labelled readings")
    if labels.nunique() < 2:
        raise DataError(
            f"{readings_dir}: every labelled reading is {'a failure' if labels.iloc[0] else 'healthy'}; "
            "a classifier needs both classes"
        )
    report = {
        "readings": len(frame),
        "machines": int(frame["machine_id"].nunique()),
        "labelled": len(labels),
        "failures": int(labels.sum()),
        "failure_rate": float(labels.mean()),
        "first_timestamp": str(frame["timestamp"].min()),
        "last_timestamp": str(frame["timestamp"].max()),
    }
    return _write_json(report_path, report)


def preprocess(
    readings_dir: str, out_dir: str, config: TrainingConfig | None = None, live_fraction: float = 0.1
) -> dict[str, Any]:
    """Target and leakage-free split into train / validation / test, plus the newest live window.

    The live window (the last `live_fraction` of time) is seen by no training step; live_test
    scores champion and challenger on it.
    """
    config = config or _settings().training.recipe()
    frame = read_readings_dir(readings_dir).reset_index(drop=True)
    frame[TARGET] = target(frame, config.horizon)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    live_start = (
        stamps.quantile(1 - live_fraction) if live_fraction > 0 else stamps.max() + pd.Timedelta(1, "s")
    )
    live = frame[stamps > live_start]
    history = frame[stamps <= live_start].reset_index(drop=True)
    parts = split(
        history,
        history[TARGET],
        method=config.split,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        horizon=config.horizon,
        seed=config.seed,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = {
        "train": history.iloc[parts.train],
        "validation": history.iloc[parts.validation],
        "test": history.iloc[parts.test],
        "live": live[live[TARGET].notna()],
    }
    summary: dict[str, Any] = {}
    for name, chunk in chunks.items():
        chunk.to_parquet(out / f"{name}.parquet", index=False)
        summary[name] = {"readings": len(chunk), "failures": int(chunk[TARGET].sum())}
    return _write_json(out / "split.json", summary)


def _part(parts_dir: str | Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = pd.read_parquet(Path(parts_dir) / f"{name}.parquet")
    return frame.drop(columns=[TARGET]), frame[TARGET]


def tune(parts_dir: str, out_path: str, config: TrainingConfig | None = None) -> dict[str, Any]:
    """Optuna search over both model families on the validation part."""
    from predmaint.training import tune as search

    config = config or _settings().training.recipe()
    x_train, y_train = _part(parts_dir, "train")
    x_val, y_val = _part(parts_dir, "validation")
    result = search(x_train, y_train, x_val, y_val, config)
    return _write_json(out_path, asdict(result))


def train(
    parts_dir: str, tuning_path: str, model_dir: str, config: TrainingConfig | None = None
) -> dict[str, Any]:
    """Fit the best family on train ∪ validation with an out-of-fold threshold; fit failure-mode models."""
    import joblib

    from predmaint.model import Bundle
    from predmaint.training import fit_final, reference_sample

    config = config or _settings().training.recipe()
    tuning = _read_json(tuning_path)
    x_train, y_train = _part(parts_dir, "train")
    x_val, y_val = _part(parts_dir, "validation")
    model, threshold, validation, modes = fit_final(
        x_train, y_train, x_val, y_val, tuning["family"], tuning["params"], config
    )
    bundle = Bundle(
        model, threshold, modes, tuning["family"], {"params": tuning["params"], "validation": validation}
    )
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(bundle, out / "bundle.joblib")
    reference_sample(pd.concat([x_train, x_val]), config.seed).to_parquet(
        out / "reference.parquet", index=False
    )
    x_test, _ = _part(parts_dir, "test")  # held out: what the model says about readings it has not seen
    pd.DataFrame({"failure_probability": model.predict_proba(x_test)[:, 1]}).to_parquet(
        out / REFERENCE_PROBABILITIES, index=False
    )
    return {"family": bundle.family, "threshold": threshold, **bundle.metadata["validation"]}


def _load_bundle(model_dir: str | Path) -> Any:
    import joblib

    return joblib.load(Path(model_dir) / "bundle.joblib")


def evaluate(model_dir: str, parts_dir: str, metrics_path: str, report_path: str) -> dict[str, Any]:
    """Metrics of the trained model on the test part, and an HTML report of them."""
    from predmaint.training import metrics

    bundle = _load_bundle(model_dir)
    x_test, y_test = _part(parts_dir, "test")
    result = metrics(y_test, bundle.model.predict_proba(x_test)[:, 1], bundle.threshold)
    _write_json(metrics_path, result)
    Path(report_path).write_text(render_report(bundle, result), encoding="utf-8")
    return result


def render_report(bundle: Any, result: dict[str, Any]) -> str:
    """A small self-contained HTML page with the test metrics (shown in the KFP UI)."""
    rows = "".join(
        f"<tr><th>{key}</th><td>{value:.4f}</td></tr>"
        if isinstance(value, float)
        else f"<tr><th>{key}</th><td>{value}</td></tr>"
        for key, value in result.items()
        if key != "pr_curve"
    )
    curve = result.get("pr_curve") or {"recall": [], "precision": []}
    points = " ".join(
        f"{40 + r * 300:.1f},{320 - p * 300:.1f}"
        for r, p in zip(curve["recall"], curve["precision"], strict=True)
    )
    svg = (
        "<svg width='360' height='350' role='img' aria-label='precision-recall curve'>"
        "<rect x='40' y='20' width='300' height='300' fill='none' stroke='#999'/>"
        f"<polyline points='{points}' fill='none' stroke='#1f77b4' stroke-width='2'/>"
        "<text x='150' y='345'>recall</text><text x='0' y='15'>precision</text></svg>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>predmaint evaluation</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}</style></head>"
        f"<body><h1>Evaluation on the test period</h1><p>Model family: <b>{bundle.family}</b>, "
        f"decision threshold {bundle.threshold:.3f}.</p><table>{rows}</table>"
        "<p>Confusion matrix: tn/fp/fn/tp above; F1, recall and precision are for the failure class.</p>"
        f"<h2>Precision–recall curve (test)</h2>{svg}"
        "</body></html>"
    )


def register(
    model_dir: str,
    tuning_path: str,
    metrics_path: str,
    lineage: dict[str, str],
    mlflow: Any = None,
    config: TrainingConfig | None = None,
) -> dict[str, Any]:
    """Log the run to MLflow and register the model as a new version with alias `challenger`."""
    from predmaint.registry import log_and_register
    from predmaint.training import Trained

    if mlflow is None or config is None:
        settings = _settings()
        mlflow, config = mlflow or settings.mlflow, config or settings.training.recipe()
    bundle = _load_bundle(model_dir)
    tuning = _read_json(tuning_path)
    trained = Trained(
        model=bundle.model,
        threshold=bundle.threshold,
        family=bundle.family,
        params=tuning["params"],
        mode_models=bundle.mode_models,
        validation=bundle.metadata["validation"],
        test=_read_json(metrics_path),
        tuning=TuningResult(**tuning),
        reference=pd.read_parquet(Path(model_dir) / "reference.parquet"),
        reference_probabilities=pd.read_parquet(Path(model_dir) / REFERENCE_PROBABILITIES)[
            "failure_probability"
        ].to_numpy(),
    )
    registered = log_and_register(
        trained,
        tracking_uri=mlflow.tracking_uri,
        experiment=mlflow.experiment,
        model_name=mlflow.model_name,
        tags=lineage,
        artifact_location=mlflow.artifact_location,
        params=asdict(config),
    )
    return asdict(registered)


def live_test(version: str, parts_dir: str, out_path: str, mlflow: Any = None) -> dict[str, Any]:
    """Score the challenger and the current champion on the same test and live data."""
    from predmaint.registry import CHAMPION, alias_version, load_version
    from predmaint.training import metrics

    mlflow = mlflow or _settings().mlflow
    champion_version = alias_version(mlflow.tracking_uri, mlflow.model_name, CHAMPION)
    result: dict[str, Any] = {"challenger_version": version, "champion_version": champion_version}
    challenger = load_version(mlflow.tracking_uri, mlflow.model_name, version)
    champion = (
        load_version(mlflow.tracking_uri, mlflow.model_name, champion_version) if champion_version else None
    )
    for name in ("test", "live"):
        x, y = _part(parts_dir, name)
        if len(x) == 0 or y.nunique() < 2:
            log.warning(
                "the %s data has %d readings and %d classes; not compared on it", name, len(x), y.nunique()
            )
            continue
        result[name] = {
            "challenger": _score(challenger, x, y, metrics),
            "champion": _score(champion, x, y, metrics) if champion is not None else None,
        }
    return _write_json(out_path, result)


def _score(bundle: Any, x: pd.DataFrame, y: pd.Series, metrics: Any) -> dict[str, Any]:
    return metrics(y, bundle.model.predict_proba(x)[:, 1], bundle.threshold)


def promote(live_test_path: str, mlflow: Any = None) -> dict[str, Any]:
    """Apply the promotion gate; move `champion` to the challenger only if it wins."""
    from predmaint.registry import CHAMPION, alias_version, promotion_gate, set_alias

    mlflow = mlflow or _settings().mlflow
    comparison = _read_json(live_test_path)
    datasets = {
        n: (comparison[n]["challenger"], comparison[n]["champion"])
        for n in ("test", "live")
        if n in comparison
    }
    if not datasets:
        raise DataError("neither the test nor the live data could compare the models; nothing to decide on")
    current = alias_version(mlflow.tracking_uri, mlflow.model_name, CHAMPION)
    if current != comparison["champion_version"]:
        raise DataError(f"the champion moved to v{current} during this run; rerun live_test before promoting")
    decision = promotion_gate(datasets, metric=mlflow.promotion_metric, margin=mlflow.promotion_margin)
    if decision.promote:
        set_alias(mlflow.tracking_uri, mlflow.model_name, CHAMPION, comparison["challenger_version"])
    champion = comparison["challenger_version"] if decision.promote else current
    return {"promoted": decision.promote, "reason": decision.reason, "champion_version": champion}
