"""Shared fixtures: a simulated fleet and the real AI4I file, both loaded once per session."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest

from predmaint.datasets import load_ai4i
from predmaint.simulator import SimulationSpec, simulate

pytest_plugins = ["reliability"]  # the rows of docs/RELIABILITY.md (tests/reliability.py)


def _simulate_frame(**kwargs) -> pd.DataFrame:
    return pd.concat(simulate(SimulationSpec(**kwargs)), ignore_index=True)


@pytest.fixture(scope="session")
def simulate_frame():
    """Run a simulation and return all its readings as one DataFrame."""
    return _simulate_frame


@pytest.fixture(scope="session")
def fleet() -> pd.DataFrame:
    """A large fleet for statistics: 200 machines × 1,000 steps."""
    return _simulate_frame(machines=200, steps=1000, seed=1)


@pytest.fixture(scope="session")
def ai4i() -> pd.DataFrame:
    """The real AI4I 2020 file in the reading contract."""
    return load_ai4i()


@pytest.fixture(scope="session")
def served_bundle():
    """A small XGBoost bundle with failure-mode models, as the service loads it."""
    from predmaint.model import Bundle
    from predmaint.training import build_model, fit_mode_models

    data = _simulate_frame(machines=20, steps=300, seed=3)
    model = build_model("xgboost", {"n_estimators": 60, "max_depth": 4}).fit(data, data["machine_failure"])
    return Bundle(model, 0.5, fit_mode_models(data, data), "xgboost")


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's PREDMAINT_* environment."""
    for name in list(os.environ):
        if name.startswith("PREDMAINT_"):
            monkeypatch.delenv(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: every component the suite names must be there."""
    if not os.environ.get("CI") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        names = ", ".join(sorted({report.nodeid for report in skipped}))
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped, which CI does not allow: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def local_pipeline(tmp_path, monkeypatch):
    """A store with one DVC snapshot, settings pointing at SQLite MLflow under tmp_path, and a runner.

    Returns `run()`, which runs the whole `predmaint-training` pipeline through kfp.local and
    returns the promotion decision; `run.settings` are the settings the pipeline's tasks see.
    """
    import threading

    from predmaint.config import load_settings
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore
    from predmaint.retrain import latest_snapshot, run_local
    from predmaint.versioning import remote_config, snapshot

    monkeypatch.chdir(tmp_path)
    for key, value in {
        "PREDMAINT_STATE_DIR": str(tmp_path / "state"),
        "PREDMAINT_DATA__REMOTE": str(tmp_path / "remote"),
        "PREDMAINT_MLFLOW__TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "PREDMAINT_MLFLOW__ARTIFACT_LOCATION": str(tmp_path / "mlartifacts"),
        "PREDMAINT_TRAINING__TRIALS": "2",
        "PREDMAINT_TRAINING__FAMILIES": '["xgboost"]',
    }.items():
        monkeypatch.setenv(key, value)
    store = tmp_path / "store"
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(SimulationSpec(machines=20, steps=600, seed=5)), writer, threading.Event())
    snapshot(store, remote_config(str(tmp_path / "remote")))

    def run() -> dict:
        return run_local(latest_snapshot(store), store, tmp_path / "kfp")

    run.settings = load_settings()
    run.store = store
    return run


@pytest.fixture
def browser():
    """Headless Debian Chromium through Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromedriver = shutil.which("chromedriver")
    assert chromedriver, "chromedriver is missing: make system-deps installs Debian chromium-driver"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def mlflow_image(tmp_path_factory):
    """The MLflow image on a real PostgreSQL, run as manifests/base runs it, with its users."""
    from containers import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlartifacts")) as uri:
        yield uri
