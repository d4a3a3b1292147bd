"""The WSGI entry point for gunicorn: `gunicorn serving.wsgi:app` (what `predmaint serve` runs).

Settings come from params.yaml and `PREDMAINT_*` (the `serving` and `mlflow` sections).
"""

from __future__ import annotations

import os

# A registry outage should show at the next alias check, not after MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

from predmaint.config import load_settings  # noqa: E402
from serving.app import create_app_from_settings  # noqa: E402
from serving.registry_loader import follow_alias  # noqa: E402

_settings = load_settings()
app = create_app_from_settings(_settings.serving)
follow_alias(
    app.extensions["predmaint.models"],
    tracking_uri=_settings.mlflow.tracking_uri,
    model_name=_settings.mlflow.model_name,
    interval=_settings.serving.poll_seconds,
    load_first=True,  # each worker takes requests only once it holds the champion
)
