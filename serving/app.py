"""`create_app()`: POST /predict, GET /health, GET /ready, GET /model.

The model is loaded once (from the registry alias or a bundle given in the config) and held by a
`ModelHolder`, whose reference is swapped atomically when a new model arrives, so a request
always uses one whole model. Input is checked against the reading contract; every bad input is a
4xx with a JSON body naming the field and the problem.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

DEFAULT_CONFIG: dict[str, Any] = {
    "MAX_BATCH": 1000,  # readings per request
    "MAX_CONTENT_LENGTH": 2 << 20,  # bytes per request body (413 above)
    "EXPLAIN": True,  # top contributing features in every answer
    "BUNDLE": None,  # a predmaint.model.Bundle to serve instead of the registry's champion
    "MODEL_VERSION": "local",
    "MODEL_INFO": {},
}


@dataclass(frozen=True)
class LoadedModel:
    """One model and what the service tells clients about it."""

    bundle: Any
    version: str
    info: dict[str, Any]


class ModelHolder:
    """Holds the current model; `swap` replaces it in one reference assignment."""

    def __init__(self) -> None:
        """Start with no model (the service is not ready)."""
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        """The model in service, or None before the first load."""
        return self._current

    def swap(self, model: LoadedModel) -> None:
        """Put a new model in service."""
        with self._lock:
            self._current = model


class BadInput(Exception):
    """A request that does not hold valid readings; becomes a 4xx JSON answer."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        """Keep the message, status and offending field."""
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


api = Blueprint("api", __name__)


def _readings_from_request() -> list[dict[str, Any]]:
    from predmaint.schema import FIELD_NAMES, ReadingError, validate_reading

    if not request.is_json:
        raise BadInput("send Content-Type: application/json with a reading or a list of readings", 415)
    payload = request.get_json(silent=True)
    if payload is None:
        raise BadInput("the body is empty or not valid JSON")
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadInput("the list of readings is empty")
    limit = current_app.config["MAX_BATCH"]
    if len(items) > limit:
        raise BadInput(f"{len(items)} readings in one request; the limit is {limit}", 413)
    readings = []
    for index, item in enumerate(items):
        try:
            readings.append(validate_reading(item))
        except ReadingError as exc:
            where = f"reading {index}: " if isinstance(payload, list) else ""
            name = str(exc).split(":", 1)[0]
            raise BadInput(f"{where}{exc}", 422, name if name in FIELD_NAMES else None) from None
    return readings


@api.post("/predict")
def predict() -> Any:
    """Explained failure predictions for one reading or a list of readings."""
    import pandas as pd

    from predmaint.model import predict_readings

    readings = _readings_from_request()
    model = current_app.extensions["predmaint.models"].current
    if model is None:
        return jsonify(error="no model is loaded yet; retry when /ready answers 200"), 503
    frame = pd.DataFrame(readings)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    out = predict_readings(model.bundle, frame, explain=current_app.config["EXPLAIN"])
    results = []
    for reading, row in zip(readings, out.to_dict("records"), strict=True):
        result = {
            "machine_id": reading["machine_id"],
            "seq": reading["seq"],
            "failure_probability": round(float(row["failure_probability"]), 6),
            "failure": bool(row["failure"]),
            "failure_modes": {k[2:]: round(float(v), 6) for k, v in row.items() if k.startswith("p_")},
            "model_version": model.version,
        }
        if "top_features" in row:
            import json

            result["top_features"] = json.loads(row["top_features"])
        results.append(result)
    return jsonify(predictions=results)


@api.get("/health")
def health() -> Any:
    """The process is alive."""
    return jsonify(status="ok")


@api.get("/ready")
def ready() -> Any:
    """200 once a model is loaded, 503 before."""
    model = current_app.extensions["predmaint.models"].current
    if model is None:
        return jsonify(ready=False, reason="no model loaded yet"), 503
    return jsonify(ready=True, model_version=model.version)


@api.get("/model")
def model_info() -> Any:
    """Name, version and lineage of the model in service."""
    model = current_app.extensions["predmaint.models"].current
    if model is None:
        return jsonify(error="no model loaded yet"), 503
    return jsonify(
        version=model.version, family=model.bundle.family, threshold=model.bundle.threshold, **model.info
    )


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the service; with `BUNDLE` in `config` it serves that model at once."""
    app = Flask(__name__)
    app.config.update(DEFAULT_CONFIG)
    app.config.update(config or {})
    holder = ModelHolder()
    app.extensions["predmaint.models"] = holder
    if app.config["BUNDLE"] is not None:
        holder.swap(
            LoadedModel(app.config["BUNDLE"], str(app.config["MODEL_VERSION"]), app.config["MODEL_INFO"])
        )
    app.register_blueprint(api)

    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput) -> Any:
        body = {"error": exc.message}
        if exc.field:
            body["field"] = exc.field
        return jsonify(body), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.description or exc.name), exc.code

    return app
