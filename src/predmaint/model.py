"""The deployable model: failure probability, decision, failure modes and reasons per reading.

A `Bundle` holds the fitted pipeline, its decision threshold and the failure-mode models.
`predict_readings` is the one prediction function: the MLflow pyfunc wraps it, and the service
calls it directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from predmaint.ingest.parse import column_list
from predmaint.training import MODE_TARGETS, contributions, top_contributions

try:  # the pyfunc base class; the bundle itself does not need MLflow
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency of the project
    PythonModel = object  # type: ignore[assignment,misc]


@dataclass
class Bundle:
    """Everything a prediction needs."""

    model: Any
    threshold: float
    mode_models: dict[str, Any]
    family: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _mode_probability(mode_model: Any, readings: pd.DataFrame) -> np.ndarray:
    if isinstance(mode_model, float):
        return np.full(len(readings), mode_model)
    return mode_model.predict_proba(readings)[:, 1]


def predict_readings(
    bundle: Bundle, readings: pd.DataFrame, *, explain: bool = True, top_k: int = 3
) -> pd.DataFrame:
    """Predict for contract readings: probability, decision, mode probabilities, top reasons."""
    proba = bundle.model.predict_proba(readings)[:, 1]
    out = pd.DataFrame(
        {"failure_probability": proba, "failure": (proba >= bundle.threshold).astype(int)},
        index=readings.index,
    )
    for mode in MODE_TARGETS:
        if mode in bundle.mode_models:
            out[f"p_{mode}"] = _mode_probability(bundle.mode_models[mode], readings)
    if explain:
        reasons = top_contributions(contributions(bundle.model, readings), k=top_k)
        out["top_features"] = [json.dumps(r) for r in reasons]
    return out


def answers(readings: Any, predicted: Any, model_version: str) -> list[dict[str, Any]]:
    """JSON-ready answers, one per reading: what the service returns and the web page shows.

    `readings` and `predicted` are DataFrames or mappings of column → values (the compiled
    path's); `top_features` holds lists of reasons, or their JSON text (the pyfunc's output).
    """
    proba = column_list(predicted["failure_probability"])
    failure = column_list(predicted["failure"])
    modes = [(name[2:], column_list(predicted[name])) for name in predicted if name.startswith("p_")]
    reasons = column_list(predicted["top_features"]) if "top_features" in predicted else None
    out = []
    for i, (machine, seq) in enumerate(
        zip(column_list(readings["machine_id"]), column_list(readings["seq"]), strict=True)
    ):
        answer: dict[str, Any] = {
            "machine_id": machine,
            "seq": int(seq),
            "failure_probability": round(float(proba[i]), 6),
            "failure": bool(failure[i]),
            "failure_modes": {mode: round(float(values[i]), 6) for mode, values in modes},
            "model_version": model_version,
        }
        if reasons is not None:
            answer["top_features"] = json.loads(reasons[i]) if isinstance(reasons[i], str) else reasons[i]
        out.append(answer)
    return out


class FailureModel(PythonModel):  # type: ignore[misc,valid-type]
    """MLflow pyfunc: contract readings in, `predict_readings` out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle saved with the model."""
        import joblib

        self.bundle: Bundle = joblib.load(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Predict for a DataFrame of readings."""
        return predict_readings(self.bundle, model_input, explain=bool((params or {}).get("explain", True)))
