"""Follow the registry alias: load the champion at start, swap it in whenever the alias moves."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from predmaint.registry import ModelIntegrityError
from serving import metrics
from serving.app import LoadedModel, ModelHolder

log = logging.getLogger(__name__)


def follow_alias(
    holder: ModelHolder,
    *,
    tracking_uri: str,
    model_name: str,
    alias: str = "champion",
    interval: float = 10.0,
    stop: threading.Event | None = None,
    load_first: bool = False,
) -> threading.Thread:
    """Start a daemon thread that polls `alias` and swaps in each new version it points at.

    With `load_first`, the first check runs before returning, so a gunicorn worker accepts
    requests only once it holds the champion (when the registry answers); otherwise the worker
    starts unready and the thread keeps trying. A registry outage keeps the loaded model in
    service; the thread logs and tries again.
    """
    stop = stop or threading.Event()

    def check_once() -> None:
        from predmaint.registry import alias_version, load_version

        version = alias_version(tracking_uri, model_name, alias)
        current = holder.current
        if version is None or (current is not None and current.version == version):
            return
        bundle = load_version(tracking_uri, model_name, version)
        holder.swap(LoadedModel(bundle, version, {"name": model_name, "alias": alias, **_lineage(bundle)}))
        log.info("serving %s version %s", model_name, version)

    def guarded_check() -> None:
        try:
            check_once()
            metrics.REGISTRY_UP.set(1)
            metrics.REGISTRY_LAST_SUCCESS.set(time.time())
        except ModelIntegrityError as exc:
            metrics.MODELS_REFUSED.inc()
            log.error(
                "refused a champion (%s); still serving %s", exc, holder.current and holder.current.version
            )
        except Exception as exc:  # noqa: BLE001 - any registry failure: keep serving, retry later
            metrics.REGISTRY_UP.set(0)
            metrics.REGISTRY_ERRORS.inc()
            log.warning(
                "registry check failed (%s); still serving %s", exc, holder.current and holder.current.version
            )

    if load_first:
        guarded_check()

    def loop() -> None:
        if load_first and stop.wait(interval):
            return
        while True:
            guarded_check()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="follow-champion", daemon=True)
    thread.start()
    return thread


def _lineage(bundle: Any) -> dict[str, Any]:
    keys = ("data_version", "pipeline_run_id", "git_commit")
    lineage = {key: bundle.metadata[key] for key in keys if key in bundle.metadata}
    if "test" in bundle.metadata:
        lineage["test_metrics"] = {k: v for k, v in bundle.metadata["test"].items() if k != "pr_curve"}
    return lineage
