"""Prometheus metrics of the service, correct under several gunicorn workers.

With `PROMETHEUS_MULTIPROC_DIR` set (what `predmaint serve` does), every worker writes its
samples to files in that directory and `/metrics` adds them up; without it (one process, tests)
the default registry is used. Gauges that describe one worker (model version, registry health)
carry a `pid` label in multiprocess mode.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "predmaint_requests_total",
    "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"],
)
ERRORS = Counter(
    "predmaint_request_errors_total", "Requests answered with a 4xx or 5xx, by status.", ["status"]
)
LATENCY = Histogram(
    "predmaint_request_duration_seconds",
    "Time from request to response, by endpoint.",
    ["endpoint"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
PREDICTIONS = Counter("predmaint_predictions_total", "Readings predicted, by decision.", ["decision"])
MODEL_VERSION = Gauge(
    "predmaint_model_version",
    "Registry version of the model in service (0: none or not from the registry).",
    multiprocess_mode="liveall",
)
MODEL_SWAPS = Counter("predmaint_model_swaps_total", "Times a new model was put in service.")
REGISTRY_UP = Gauge(
    "predmaint_registry_up",
    "1 when the last check of the champion alias reached the registry, 0 when it failed.",
    multiprocess_mode="liveall",
)
REGISTRY_ERRORS = Counter("predmaint_registry_errors_total", "Checks of the champion alias that failed.")
MODELS_REFUSED = Counter(
    "predmaint_models_refused_total",
    "Model versions refused: artifacts that do not match their recorded digest.",
)
REGISTRY_LAST_SUCCESS = Gauge(
    "predmaint_registry_last_success_timestamp_seconds",
    "Unix time of the last successful check of the champion alias.",
    multiprocess_mode="max",
)
LOG_RECORDS = Counter(
    "predmaint_prediction_log_records_total",
    "Prediction records handled by the prediction log, by outcome (written, failed, dropped).",
    ["outcome"],
)


def render() -> tuple[bytes, str]:
    """The exposition text of all workers (or of this process) and its content type."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def record_log_flush(written: int, failed: int, dropped: int) -> None:
    """Count what one flush of the prediction log did."""
    for outcome, count in (("written", written), ("failed", failed), ("dropped", dropped)):
        if count:
            LOG_RECORDS.labels(outcome).inc(count)


def numeric_version(version: str | None) -> float:
    """A registry version as a gauge value (0 for none or a non-numeric local version)."""
    try:
        return float(version) if version is not None else 0.0
    except ValueError:
        return 0.0
