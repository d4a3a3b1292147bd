"""`create_app()`: POST /predict, GET /health, /ready, /model, /metrics, /openapi.json.

The model is loaded once (from the registry alias or a bundle given in the config) and held by a
`ModelHolder`, whose reference is swapped atomically when a new model arrives, so a request
always uses one whole model. Input is checked against the reading contract; every bad input is a
4xx with a JSON body naming the field and the problem.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from predmaint.auth import bearer_matches, read_token
from serving import metrics

if TYPE_CHECKING:
    from collections.abc import Mapping

    Readings = Mapping[str, Any]  # contract columns from predmaint.ingest.parse.parse_columns

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()

DEFAULT_CONFIG: dict[str, Any] = {
    "MAX_BATCH": 1000,  # readings per request
    "MAX_CONTENT_LENGTH": 2 << 20,  # bytes per request body (413 above)
    "EXPLAIN": True,  # top contributing features in every answer
    "BUNDLE": None,  # a predmaint.model.Bundle to serve instead of the registry's champion
    "MODEL_VERSION": "local",
    "MODEL_INFO": {},
    "PREDICTION_LOG": None,  # a predmaint.predlog.PredictionLog, or None for no log
    "TOKEN": None,  # the bearer token POST /predict and the page's form require, or None for open
}


@dataclass(frozen=True)
class LoadedModel:
    """One model, its compiled form, and what the service tells clients about it."""

    bundle: Any
    version: str
    info: dict[str, Any]
    compiled: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        """Compile the bundle for the request path; bundles it cannot compile use the reference path."""
        from predmaint.fastpath import NotCompilable, compile_bundle

        try:
            object.__setattr__(self, "compiled", compile_bundle(self.bundle))
        except NotCompilable as exc:
            log.info("model %s served by predict_readings: %s", self.version, exc)

    def predict(self, readings: Readings, explain: bool) -> Any:
        """Predictions for validated readings, compiled when possible (columns, or a DataFrame)."""
        if self.compiled is not None:
            return self.compiled.predict(readings, explain=explain)
        from predmaint.ingest.parse import to_frame
        from predmaint.model import predict_readings

        return predict_readings(self.bundle, to_frame(readings), explain=explain)


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
        metrics.MODEL_VERSION.set(metrics.numeric_version(model.version))
        metrics.MODEL_SWAPS.inc()


class BadInput(Exception):
    """A request that does not hold valid readings; becomes a 4xx JSON answer."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        """Keep the message, status and offending field."""
        super().__init__(message)
        self.message, self.status, self.field = message, status, field


api = Blueprint("api", __name__)


def _readings_from_request() -> Readings:
    """The request's readings as contract columns, or a `BadInput` naming the problem."""
    if not request.is_json:
        raise BadInput("send Content-Type: application/json with a reading or a list of readings", 415)
    body = request.get_data(cache=False)
    if not body.strip():
        raise BadInput("the body is empty or not valid JSON; send a reading or a list of readings")
    return parse_body(body, body.lstrip()[:1] == b"[")


def _explain_unparsable(body: bytes) -> None:
    """Raise the most useful `BadInput` for a body msgspec would not split into readings."""
    from predmaint.ingest.parse import Unreadable, load_json
    from predmaint.schema import ReadingError, validate_reading

    try:
        payload = load_json(body.decode("utf-8"))  # reads NaN/Infinity, so their field can be named
    except UnicodeDecodeError as exc:
        raise BadInput(f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except Unreadable as exc:
        raise BadInput(
            f"the body is empty or not valid JSON: {str(exc).removeprefix('invalid JSON: ')}"
        ) from None
    is_list = isinstance(payload, list)
    for index, item in enumerate(payload if is_list else [payload]):
        try:
            validate_reading(item)
        except ReadingError as exc:
            where = f"reading {index}: " if is_list else ""
            raise BadInput(f"{where}{exc}", 422, _field_of(str(exc))) from None
    raise BadInput("the body is not valid JSON (NaN and Infinity are not JSON numbers)")


def _field_of(reason: str) -> str | None:
    """The field a contract message is about ("torque_nm: …", "missing field(s): seq, …")."""
    from predmaint.schema import FIELD_NAMES

    head, _, rest = reason.partition(":")
    if head in FIELD_NAMES:
        return head
    if head in ("missing field(s)", "unknown field(s)"):
        return rest.split(",")[0].strip() or None
    return None


def predict_and_log(readings: Readings, model: LoadedModel) -> list[dict[str, Any]]:
    """Answers for validated readings: counted in /metrics and appended to the prediction log."""
    from predmaint.model import answers

    predicted = model.predict(readings, current_app.config["EXPLAIN"])
    results = answers(readings, predicted, model.version)
    failures = sum(answer["failure"] for answer in results)
    if failures:
        metrics.PREDICTIONS.labels("failure").inc(failures)
    if len(results) > failures:
        metrics.PREDICTIONS.labels("no_failure").inc(len(results) - failures)
    prediction_log = current_app.config["PREDICTION_LOG"]
    if prediction_log is not None:
        from predmaint.predlog import now_iso, records

        prediction_log.append(records(readings, results, now_iso()))
    return results


def parse_body(body: bytes, is_list: bool) -> Readings:
    """Validate raw readings with the ingestion fast path; the first bad one is a 422."""
    from predmaint.ingest.parse import parse_columns, split_payload

    items = split_payload(body)
    if items is None:
        _explain_unparsable(body)
    if not items:
        raise BadInput("the list of readings is empty")
    limit = current_app.config["MAX_BATCH"]
    if len(items) > limit:
        raise BadInput(f"{len(items)} readings in one request; the limit is {limit}", 413)
    readings, dead_letters = parse_columns(items, [str(i) for i in range(len(items))] if is_list else None)
    if dead_letters:
        first = dead_letters[0]
        where = f"reading {first.position}: " if is_list else ""
        raise BadInput(f"{where}{first.reason}", 422, _field_of(first.reason))
    return readings


def unauthorized(message: str) -> Response:
    """401 with the challenge that names the scheme."""
    response = jsonify(error=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="predmaint"'
    return response


@api.post("/predict")
def predict() -> Any:
    """Explained failure predictions for one reading or a list of readings."""
    token = current_app.config["TOKEN"]
    if token is not None and not bearer_matches(request.headers.get("Authorization"), token):
        return unauthorized("send Authorization: Bearer <token> (serving.token_file)")
    readings = _readings_from_request()
    model = current_app.extensions["predmaint.models"].current
    if model is None:
        return jsonify(error="no model is loaded yet; retry when /ready answers 200"), 503
    return Response(
        _ENCODER.encode({"predictions": predict_and_log(readings, model)}), mimetype="application/json"
    )


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


@api.get("/metrics")
def prometheus_metrics() -> Any:
    """Prometheus metrics of all workers."""
    body, content_type = metrics.render()
    return current_app.response_class(body, mimetype=None, content_type=content_type)


@api.get("/openapi.json")
def openapi() -> Any:
    """The API described in OpenAPI 3.0, with this service's limits."""
    from serving.openapi import openapi_document

    return jsonify(
        openapi_document(
            current_app.config["MAX_BATCH"],
            current_app.config["MAX_CONTENT_LENGTH"],
            token_required=current_app.config["TOKEN"] is not None,
        )
    )


def _endpoint_label() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


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
    from serving.ui import ui

    app.register_blueprint(ui)

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        endpoint = _endpoint_label()
        status = str(response.status_code)
        metrics.REQUESTS.labels(endpoint, request.method, status).inc()
        if response.status_code >= 400:
            metrics.ERRORS.labels(status).inc()
        if "started" in g:
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
        return response

    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput) -> Any:
        body = {"error": exc.message}
        if exc.field:
            body["field"] = exc.field
        return jsonify(body), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        response = exc.get_response()  # keeps headers such as Allow on a 405
        response.set_data(json.dumps({"error": exc.description or exc.name}))
        response.content_type = "application/json"
        return response

    return app


def create_app_from_settings(serving: Any) -> Flask:
    """The service as `predmaint.config.ServingSettings` describe it (limits, explanations, log)."""
    prediction_log = None
    if serving.prediction_log is not None:
        from predmaint.predlog import PredictionLog

        prediction_log = PredictionLog(
            serving.prediction_log,
            serving.prediction_log_format,
            serving.prediction_log_flush_seconds,
            on_flush=metrics.record_log_flush,
            retention_days=serving.prediction_log_retention_days,
        )
    return create_app(
        {
            "TOKEN": read_token(serving.token_file, "serving.token_file") if serving.token_file else None,
            "MAX_BATCH": serving.max_batch,
            "MAX_CONTENT_LENGTH": serving.max_body_bytes,
            "EXPLAIN": serving.explain,
            "PREDICTION_LOG": prediction_log,
        }
    )
