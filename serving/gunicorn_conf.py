"""gunicorn settings `predmaint serve` passes with `-c`: worker timeout, boot heartbeat, metrics cleanup."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from predmaint.config import load_settings

# Seconds a worker may go without a heartbeat before the master kills and replaces it. A sync worker
# beats between requests, so this is the longest one request may take (serving.worker_timeout).
timeout = load_settings().serving.worker_timeout


def post_fork(server: Any, worker: Any) -> None:
    """Beat for a booting worker until it has loaded the app, so the timeout applies only to requests.

    Each worker loads the champion from MLflow while gunicorn imports serving.wsgi, before its
    request loop (and so its heartbeat) starts: a download can take minutes, far longer than a
    request may. gunicorn has one `timeout` for both, so raising it to cover the load would let a
    stuck request hold a worker for as long. gunicorn >= 22 happens not to kill a worker before
    its first heartbeat (the new heartbeat file carries a wall-clock time, compared with a
    monotonic clock), but that is not documented and gunicorn 21 did kill slow boots; this thread
    makes the exemption explicit. A load that never ends is bounded elsewhere: by the registry
    client's timeouts (serving/wsgi.py) and, in the chart, by the startup probe (startupSeconds).
    """
    interval = min(1.0, worker.timeout / 2)  # worker.timeout is half of `timeout`

    def beat() -> None:
        while not worker.booted and worker.alive:
            try:
                worker.notify()
            except (OSError, ValueError):  # the worker is exiting and closed its heartbeat file
                return
            time.sleep(interval)

    threading.Thread(target=beat, name="boot-heartbeat", daemon=True).start()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
