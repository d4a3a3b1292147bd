"""gunicorn's worker timeout (`serving.worker_timeout`) cuts off slow requests, never a worker's model load.

Each worker loads the champion while gunicorn imports serving.wsgi, before it takes requests; the
stand-in app here sleeps at import for longer than the timeout, as a slow MLflow download does.
"""

from __future__ import annotations

import http.client
import importlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from predmaint.config import ServingSettings
from predmaint.ingest.broker import free_port, wait_until_answering

REPO = Path(__file__).resolve().parents[1]
LOAD_SECONDS = 4  # the model load at boot
TIMEOUT_SECONDS = 1  # serving.worker_timeout

SLOW_APP = '''
"""A WSGI app whose import outlasts the worker timeout, like loading the champion; /slow outlasts it too."""
import time

time.sleep(LOAD_SECONDS)


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(LOAD_SECONDS)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"loaded"]
'''

# gunicorn >= 22 does not kill a worker before its first heartbeat (its heartbeat file starts with a
# wall-clock time the master compares with a monotonic one); gunicorn 21 started the clock at
# spawn. This configuration restores that strict clock, so the test does not depend on the accident.
STRICT_CLOCK_CONF = '''
"""serving.gunicorn_conf, with each worker's heartbeat clock started when it is spawned."""
from serving.gunicorn_conf import child_exit, post_fork, timeout  # noqa: F401


def pre_fork(server, worker):
    worker.tmp.notify()
'''


def test_timeout_comes_from_the_serving_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import serving.gunicorn_conf as conf

    assert conf.timeout == ServingSettings().worker_timeout == 30  # gunicorn's own default
    monkeypatch.setenv("PREDMAINT_SERVING__WORKER_TIMEOUT", "7")
    assert importlib.reload(conf).timeout == 7
    monkeypatch.delenv("PREDMAINT_SERVING__WORKER_TIMEOUT")
    importlib.reload(conf)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("clock", ["gunicorn as locked", "heartbeat clock from spawn"])
def test_a_model_load_longer_than_the_timeout_is_not_killed(tmp_path: Path, clock: str) -> None:
    (tmp_path / "slow_app.py").write_text(SLOW_APP.replace("LOAD_SECONDS", str(LOAD_SECONDS)))
    config = "python:serving.gunicorn_conf"
    if clock == "heartbeat clock from spawn":
        (tmp_path / "strict_clock_conf.py").write_text(STRICT_CLOCK_CONF)
        config = str(tmp_path / "strict_clock_conf.py")
    log = tmp_path / "gunicorn.log"
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--config",
        config,
        "--pythonpath",
        str(tmp_path),
        "--error-logfile",
        str(log),
        "--no-control-socket",
        "slow_app:app",
    ]
    env = {**os.environ, "PREDMAINT_SERVING__WORKER_TIMEOUT": str(TIMEOUT_SECONDS)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        # The worker answers after its load, LOAD_SECONDS > the timeout, without being replaced.
        wait_until_answering(f"http://127.0.0.1:{port}/", server, seconds=LOAD_SECONDS + 20)
        assert "WORKER TIMEOUT" not in log.read_text(), log.read_text()
        # Once booted, a request longer than the timeout costs its worker, as it should.
        with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=LOAD_SECONDS + 10)
        assert "WORKER TIMEOUT" in log.read_text(), log.read_text()
    finally:
        server.send_signal(signal.SIGINT)  # quick shutdown, also of a worker still loading
        server.wait(timeout=30)
