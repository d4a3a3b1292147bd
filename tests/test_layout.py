"""The repository keeps its promised shape: layout, pinned dependencies, DVC stages that run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from predmaint.datasets import read_readings

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "path",
    [
        "src/predmaint/__init__.py",
        "components/__init__.py",
        "pipelines/__init__.py",
        "serving",
        "charts",
        "manifests",
        "tests",
        "benchmarks",
        "docs",
        "dvc.yaml",
        "params.yaml",
        "skaffold.yaml",
        "README.md",
        "Makefile",
        "uv.lock",
        ".ci/run",
    ],
)
def test_layout(path):
    assert (REPO / path).exists()


def test_runtime_dependencies_are_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {
        dep.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        for dep in project["dependencies"]
    }
    for required in (
        "kfp",
        "kubernetes",
        "pandas",
        "scikit-learn",
        "mlflow",
        "dvc",
        "flask",
        "gunicorn",
        "alibi-detect",
    ):
        assert required in names
    assert {"xgboost", "xgboost-cpu"} & names
    assert any(dep.replace(" ", "").startswith("pandas>=2.2,<3") for dep in project["dependencies"])
    assert project["requires-python"].startswith(">=3.11")


def test_skaffold_uses_a_current_schema():
    assert yaml.safe_load((REPO / "skaffold.yaml").read_text())["apiVersion"].startswith("skaffold/v4beta")


def dvc_project(path: Path, **env: str):
    """Make `path` a git + DVC project with the repository's dvc.yaml; return a shell runner."""
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        (path / name).write_text((REPO / name).read_text())
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}

    def sh(*cmd: str) -> str:
        result = subprocess.run(cmd, cwd=path, env=environment, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    sh("git", "init", "-q")
    sh(str(BIN / "dvc"), "init", "-q")
    return sh


@pytest.mark.integration
@pytest.mark.slow
def test_dvc_repro_runs_the_simulate_stage(tmp_path):
    """`dvc repro` with the real DVC in a fresh repository produces the simulated fleet."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())["simulator"]
    sh = dvc_project(tmp_path)
    sh(str(BIN / "dvc"), "repro", "-q", "simulate")
    frame = read_readings(tmp_path / "data" / "simulated" / "readings.parquet")
    assert len(frame) == params["machines"] * params["steps"]
    assert "simulate" in (tmp_path / "dvc.lock").read_text()
    assert "up to date" in sh(str(BIN / "dvc"), "status", "simulate")


@pytest.mark.integration
@pytest.mark.slow
def test_dvc_repro_runs_the_training_chain(tmp_path, simulate_frame):
    """`dvc repro` trains on the latest snapshot with the same step functions as the pipeline."""
    import threading

    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import SimulatorSource
    from predmaint.ingest.store import ReadingStore
    from predmaint.simulator import SimulationSpec
    from predmaint.versioning import remote_config, snapshot

    store = tmp_path / ".predmaint" / "store"
    with ReadingStore(store) as writer:
        run_ingest(SimulatorSource(SimulationSpec(machines=20, steps=600, seed=5)), writer, threading.Event())
    snapshot(store, remote_config(str(tmp_path / ".predmaint" / "dvc-remote")))
    sh = dvc_project(tmp_path, PREDMAINT_TRAINING__TRIALS="1", PREDMAINT_TRAINING__FAMILIES='["xgboost"]')
    sh(str(BIN / "dvc"), "repro", "-q", "promote")
    work = tmp_path / "data" / "training"
    decision = json.loads((work / "decision.json").read_text())
    assert decision["promoted"] and decision["champion_version"] == "1"
    assert json.loads((work / "metrics.json").read_text())["f1"] > 0.5
    sh(str(BIN / "dvc"), "repro", "-q", "promote")  # same snapshot: nothing downstream of pull_data reruns
    assert json.loads((work / "registered.json").read_text())["version"] == "1"
