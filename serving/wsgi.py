"""The WSGI entry point for gunicorn: `gunicorn serving.wsgi:app` (what `predmaint serve` runs)."""

from __future__ import annotations

import os

from predmaint.config import load_settings
from serving.app import create_app
from serving.registry_loader import follow_alias

_settings = load_settings()
app = create_app()
follow_alias(
    app.extensions["predmaint.models"],
    tracking_uri=_settings.mlflow.tracking_uri,
    model_name=_settings.mlflow.model_name,
    interval=float(os.environ.get("PREDMAINT_SERVE_POLL_SECONDS", "10")),
)
