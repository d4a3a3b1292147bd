"""MLflow tracking and Model Registry: log a trained recipe, register it, gate its promotion.

One registered model (default `predictive-maintenance`). Each version carries its data
version, pipeline run id, git commit and metrics as tags. A new version gets the alias
`challenger`; `champion` moves only when `promotion_gate` says the challenger beats the current
champion on the same data by the configured margin. Aliases, never stages.

Each version also carries the SHA-256 of its pickled bundle (`bundle_sha256`), taken before it
is uploaded. `load_version` downloads the version, checks that digest and only then unpickles:
a bundle changed in the artifact store (which the tags in the tracking database do not share)
is refused, and a loader keeps what it had.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from predmaint import schema
from predmaint.model import Bundle, predict_readings

CHALLENGER = "challenger"
CHAMPION = "champion"
BUNDLE_DIGEST_TAG = "bundle_sha256"
_RUNTIME_PACKAGES = ("scikit-learn", "xgboost", "pandas", "numpy", "pyarrow", "joblib", "mlflow")


class RegistryError(RuntimeError):
    """The tracking server or registry cannot do what was asked; the message says what to do."""


class ModelIntegrityError(RegistryError):
    """A registered model's bundle is not the one that was registered; it is not loaded."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class GateDecision:
    """Whether the challenger becomes champion, and why."""

    promote: bool
    reason: str


def promotion_gate(
    comparisons: Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None]],
    *,
    metric: str = "f1",
    margin: float = 0.005,
) -> GateDecision:
    """Promote only if the challenger beats the champion by `margin` on every dataset compared.

    `comparisons` maps a dataset name (e.g. "test", "live") to (challenger metrics, champion
    metrics measured on the same data, or None when there is no champion yet).
    """
    if not comparisons:
        raise ValueError("the promotion gate needs at least one dataset to compare on")
    if all(champion is None for _, champion in comparisons.values()):
        return GateDecision(True, "no champion yet: the first model becomes champion")
    reasons = []
    for name, (challenger, champion) in comparisons.items():
        if champion is None:
            return GateDecision(False, f"the champion was not measured on the {name} data; not comparable")
        new, old = float(challenger[metric]), float(champion[metric])
        if math.isnan(new) or math.isnan(old):
            return GateDecision(False, f"{metric} on the {name} data is undefined (NaN); not promoting")
        if new < old + margin:
            return GateDecision(
                False, f"{name} {metric} {new:.4f} does not beat the champion's {old:.4f} by {margin}"
            )
        reasons.append(f"{name} {metric} {new:.4f} vs {old:.4f}")
    return GateDecision(True, "challenger wins: " + "; ".join(reasons) + f" (margin {margin})")


def prepare_tracking(tracking_uri: str) -> str:
    """Make a tracking URI usable: create a local SQLite file's folder, probe a server quickly."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    if tracking_uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        try:
            with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"MLflow tracking server {tracking_uri} is unreachable ({reason}); "
                "start it or set mlflow.tracking_uri"
            ) from None
    return tracking_uri


def _client(tracking_uri: str) -> Any:
    import mlflow
    from mlflow import MlflowClient

    uri = prepare_tracking(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = Path(artifact_location).resolve().as_uri() if artifact_location else None
    return str(client.create_experiment(name, artifact_location=location))


def git_commit() -> str:
    """The code's git commit (or 'unknown' outside a checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pip_requirements() -> list[str]:
    """The model's runtime requirements, pinned to the versions installed (from uv.lock)."""
    pins = []
    for name in _RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if name == "xgboost":
                pins.append(f"xgboost=={metadata.version('xgboost-cpu')}")
    return pins


@dataclass(frozen=True)
class Registered:
    """A registered model version."""

    name: str
    version: str
    run_id: str


def log_and_register(
    trained: Any,
    *,
    tracking_uri: str,
    experiment: str,
    model_name: str,
    tags: Mapping[str, str],
    artifact_location: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Registered:
    """Log a fitted recipe (params, metrics, trials as child runs, plots, model) and register it.

    The new version gets the alias `challenger` and `tags` (data version, pipeline run id, …).
    """
    import joblib
    import mlflow
    from mlflow.models import infer_signature

    client = _client(tracking_uri)
    experiment_id = _experiment(client, experiment, artifact_location)
    all_tags = {"git_commit": git_commit(), **tags}
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{trained.family}", tags=all_tags
    ) as run:
        mlflow.log_params({"family": trained.family, **{f"model.{k}": v for k, v in trained.params.items()}})
        if params:
            mlflow.log_params({f"recipe.{k}": v for k, v in params.items()})
        mlflow.log_metrics({f"test_{k}": float(v) for k, v in trained.test.items() if _is_number(v)})
        mlflow.log_metrics({f"val_{k}": float(v) for k, v in trained.validation.items() if _is_number(v)})
        for trial in trained.tuning.trials:
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=f"trial-{trial['number']}", nested=True
            ):
                mlflow.log_params({"family": trial["family"], **trial["params"]})
                mlflow.log_metric("val_pr_auc", trial["val_pr_auc"])
        _log_plots(trained)
        bundle = Bundle(
            trained.model,
            trained.threshold,
            trained.mode_models,
            trained.family,
            {"test": trained.test, **all_tags},
        )
        with tempfile.TemporaryDirectory() as tmp:
            bundle_path = Path(tmp) / "bundle.joblib"
            joblib.dump(bundle, bundle_path)
            bundle_digest = file_sha256(bundle_path)
            reference_path = Path(tmp) / "reference.parquet"
            trained.reference.to_parquet(reference_path)
            mlflow.log_artifact(str(reference_path), artifact_path="reference")
            if trained.reference_probabilities is not None:
                probabilities_path = Path(tmp) / "probabilities.parquet"
                pd.DataFrame({"failure_probability": trained.reference_probabilities}).to_parquet(
                    probabilities_path
                )
                mlflow.log_artifact(str(probabilities_path), artifact_path="reference")
            # As clients send them: ISO-8601 timestamps (MLflow schemas have no time zones), and
            # seq as a double (MLflow integers cannot carry missing values).
            example = trained.reference.loc[:, list(schema.REQUIRED_FIELDS)].head(5)
            example = example.astype({"seq": "float64"}).assign(
                timestamp=example["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            signature = infer_signature(example, predict_readings(bundle, example))
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).with_name("pyfunc_model.py")),
                artifacts={"bundle": str(bundle_path)},
                pip_requirements=pip_requirements(),
                registered_model_name=model_name,
                signature=signature,
                input_example=example,
            )
    version = str(info.registered_model_version)
    metric_tags = {f"test_{k}": f"{trained.test[k]:.6f}" for k in ("f1", "recall", "precision", "pr_auc")}
    version_tags = {**all_tags, **metric_tags, "family": trained.family, BUNDLE_DIGEST_TAG: bundle_digest}
    for key, value in version_tags.items():
        client.set_model_version_tag(model_name, version, key, str(value))
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    return Registered(model_name, version, run.info.run_id)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _log_plots(trained: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    test = trained.test
    figure, axis = plt.subplots(figsize=(4, 4))
    axis.imshow([[test["tn"], test["fp"]], [test["fn"], test["tp"]]], cmap="Blues")
    for (row, col), value in {
        (0, 0): test["tn"],
        (0, 1): test["fp"],
        (1, 0): test["fn"],
        (1, 1): test["tp"],
    }.items():
        axis.text(col, row, str(value), ha="center", va="center")
    axis.set_xticks([0, 1], ["no failure", "failure"])
    axis.set_yticks([0, 1], ["no failure", "failure"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(f"test confusion matrix (threshold {trained.threshold:.2f})")
    mlflow.log_figure(figure, "plots/confusion_matrix.png")
    plt.close(figure)

    if test.get("pr_curve"):
        figure, axis = plt.subplots(figsize=(4, 4))
        axis.plot(test["pr_curve"]["recall"], test["pr_curve"]["precision"])
        axis.set_xlabel("recall (failure class)")
        axis.set_ylabel("precision")
        axis.set_title(f"test PR curve (PR-AUC {test['pr_auc']:.3f})")
        mlflow.log_figure(figure, "plots/pr_curve.png")
        plt.close(figure)

    classifier = trained.model.named_steps["model"]
    names = trained.model.named_steps["features"].get_feature_names_out()
    importance = pd.Series(classifier.feature_importances_, index=names).sort_values()
    figure, axis = plt.subplots(figsize=(5, 4))
    importance.plot.barh(ax=axis)
    axis.set_title("feature importance")
    figure.tight_layout()
    mlflow.log_figure(figure, "plots/feature_importance.png")
    plt.close(figure)


def load_champion(tracking_uri: str, model_name: str, alias: str = CHAMPION) -> Any:
    """The pyfunc model behind an alias, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias).version
    except MlflowException:
        return None
    return _load_verified(client, model_name, str(version))


def load_version(tracking_uri: str, model_name: str, version: str) -> Bundle:
    """The prediction bundle of a registered version, after checking its SHA-256 against its tag."""
    return _load_verified(_client(tracking_uri), model_name, version).unwrap_python_model().bundle


def _load_verified(client: Any, model_name: str, version: str) -> Any:
    """Download a version, check its bundle's digest, and only then load (unpickle) it."""
    import mlflow

    expected = client.get_model_version(model_name, version).tags.get(BUNDLE_DIGEST_TAG, "")
    if not expected:
        raise ModelIntegrityError(
            f"{model_name} version {version} has no {BUNDLE_DIGEST_TAG} tag (registered without one, or the "
            "tag was removed); not loading it: register the model again"
        )
    with tempfile.TemporaryDirectory(prefix="predmaint-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=tmp)
        )
        bundles = list(local.rglob("bundle.joblib"))
        if len(bundles) != 1:
            found = len(bundles)
            raise ModelIntegrityError(f"{model_name} version {version}: {found} bundle.joblib files, not one")
        actual = file_sha256(bundles[0])
        if not hmac.compare_digest(actual, expected):
            raise ModelIntegrityError(
                f"{model_name} version {version}: its bundle's SHA-256 is {actual[:16]}..., registered as "
                f"{expected[:16]}...: changed after registration; not loading it"
            )
        return mlflow.pyfunc.load_model(str(local))


def alias_version(tracking_uri: str, model_name: str, alias: str) -> str | None:
    """The version an alias points at, or None; a RegistryError when the server refuses the user."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code == "UNAUTHENTICATED":
            raise RegistryError(
                f"MLflow at {tracking_uri} refused the credentials (401): set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD (the chart: mlflow.existingSecret)"
            ) from None
        # No such model or alias. With basic auth, a model that does not exist yet answers 403
        # (no permission to find): absent to this user as well.
        return None


def set_alias(tracking_uri: str, model_name: str, alias: str, version: str) -> None:
    """Point an alias at a version."""
    _client(tracking_uri).set_registered_model_alias(model_name, alias, version)
