"""The whole loop on one machine: `predmaint demo` (and `make demo`).

A simulated fleet streams into the store; DVC versions it; the training pipeline runs through
`kfp.local` and makes champion v1; `predmaint serve` answers live readings and logs them; a
drift scenario starts; scheduled drift checks notice it and start one retraining through
`kfp.local` on the newest snapshot; if the challenger wins the gate the running service picks
it up — with requests flowing the whole time. Every part is the real one (store, DVC, kfp.local,
MLflow on SQLite, gunicorn); this module only orchestrates them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from predmaint.scenarios import Scenario

# Steps of the fleet: every machine sends one reading per step.
HISTORY_STEPS = 600  # in the store before v1 is trained
CALM_STEPS = 100  # answered by v1 before the drift starts
DRIFT_STEPS = 1000  # drifted readings before the scheduled check that sees them
AFTER_STEPS = 400  # answered while the retraining runs and after the new champion takes over
MEASURE_STEPS = 50  # answered by the new champion for its live F1


STAGES = {
    "data": "history of the fleet ingested and versioned with DVC",
    "train": "training pipeline through kfp.local: champion v1",
    "serve": "predmaint serve answering /predict",
    "calm": "live readings answered and logged; a scheduled drift check",
    "drift": "the drift scenario runs on the live stream",
    "retrain": "scheduled drift checks: one retraining through kfp.local, the gate decides",
    "swap": "the service answers with the champion the gate chose",
}


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs; the defaults take a few minutes on 2 cores."""

    workdir: Path
    scenario: Scenario = Scenario.sensor_bias
    machines: int = 20
    seed: int = 5
    trials: int = 4
    port: int = 0  # 0: a free port
    pace_seconds: float = 0.01  # pause between two requests of the live stream


@dataclass
class Check:
    """One scheduled drift check, as the report shows it."""

    at_step: int
    drift: bool
    retrain: bool
    reason: str
    p_values: dict[str, float]
    seconds: float


@dataclass
class Summary:
    """`summary.json`: what the demo did and measured."""

    scenario: str
    onset_step: int = 0
    data_versions: list[str] = field(default_factory=list)
    champion_before: str | None = None
    champion_after: str | None = None
    drift_detected: bool = False
    retrain_runs: int = 0
    promotion: dict[str, Any] | None = None
    requests: int = 0
    failed_requests: int = 0
    readings_answered: int = 0
    live_f1_before: float | None = None
    live_f1_after: float | None = None
    checks: list[Check] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _environment(workdir: Path, trials: int) -> dict[str, str]:
    """Settings of the demo's own world under `workdir` (store, registry, remote, log)."""
    return {
        "PREDMAINT_STATE_DIR": str(workdir / "state"),
        "PREDMAINT_INGEST__STORE": str(workdir / "store"),
        "PREDMAINT_DATA__REMOTE": str(workdir / "remote"),
        "PREDMAINT_MLFLOW__TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
        "PREDMAINT_MLFLOW__ARTIFACT_LOCATION": str(workdir / "mlartifacts"),
        "PREDMAINT_TRAINING__TRIALS": str(trials),
        "PREDMAINT_TRAINING__FAMILIES": '["xgboost"]',
        "PREDMAINT_SERVING__PREDICTION_LOG": str(workdir / "predictions"),
        "PREDMAINT_SERVING__PREDICTION_LOG_FLUSH_SECONDS": "0.5",
        "PREDMAINT_DRIFT__WINDOW": "1000",
    }


def _steps(config: DemoConfig, onset: int) -> Iterator[pd.DataFrame]:
    """The fleet's readings one step at a time, the scenario starting at step `onset`."""
    from predmaint.simulator import SimulationSpec, simulate

    spec = SimulationSpec(
        config.machines,
        HISTORY_STEPS + CALM_STEPS + DRIFT_STEPS + AFTER_STEPS + MEASURE_STEPS,
        seed=config.seed,
        scenario=config.scenario,
        onset=onset,
    )
    for chunk in simulate(spec, chunk_readings=config.machines * 100):
        for _, step in chunk.groupby("seq", sort=True):
            yield step


def _body(step: pd.DataFrame) -> bytes:
    """A step's readings (labels included, as plant software would send them once known)."""
    from predmaint import schema

    frame = step[list(schema.FIELD_NAMES)].copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(frame.to_dict("records")).encode()


class Traffic:
    """Posts each step of the live stream to /predict and remembers every answer."""

    def __init__(self, url: str) -> None:
        """Send to `url` (the service's /predict)."""
        self.url = url
        self.requests = self.failed = 0
        self.answers: list[dict[str, Any]] = []  # one per reading: step, version, probability, label

    def send(self, step: pd.DataFrame) -> None:
        """Post one step; a failure is counted, never raised."""
        request = urllib.request.Request(
            self.url, data=_body(step), headers={"Content-Type": "application/json"}, method="POST"
        )
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                predictions = json.loads(response.read())["predictions"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            self.failed += 1
            return
        for answer, label in zip(predictions, step["machine_failure"].tolist(), strict=True):
            self.answers.append(
                {
                    "step": int(answer["seq"]),
                    "machine_id": answer["machine_id"],
                    "version": answer["model_version"],
                    "probability": answer["failure_probability"],
                    "failure": answer["failure"],
                    "label": int(label),
                }
            )


def _f1(answers: list[dict[str, Any]]) -> float | None:
    if not answers:
        return None
    from sklearn.metrics import f1_score

    labels = [a["label"] for a in answers]
    if not any(labels):
        return None
    return round(float(f1_score(labels, [int(a["failure"]) for a in answers], zero_division=0)), 4)


def run(config: DemoConfig, on_stage: Callable[[str], None] = lambda stage: None) -> Summary:
    """Run the loop; returns the summary (also written to `<workdir>/summary.json`)."""
    started = time.monotonic()
    if config.workdir.exists():
        shutil.rmtree(config.workdir)  # every run starts from nothing: re-running is safe
    config.workdir.mkdir(parents=True)
    os.environ.update(_environment(config.workdir, config.trials))
    from predmaint.config import load_settings
    from predmaint.ingest.broker import free_port, wait_until_answering
    from predmaint.ingest.parse import validate_frame
    from predmaint.ingest.store import ReadingStore
    from predmaint.retrain import run_local
    from predmaint.versioning import remote_config, snapshot
    from predmaint.watch import run_check

    settings = load_settings()
    store = settings.ingest.store
    onset = HISTORY_STEPS + CALM_STEPS
    summary = Summary(scenario=config.scenario.value, onset_step=onset)
    stream = _steps(config, onset)
    clock = time.monotonic()

    def stage_done(name: str) -> None:
        nonlocal clock
        summary.stage_seconds[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()
        on_stage(name)

    def store_steps(steps: list[pd.DataFrame]) -> None:
        with ReadingStore(store) as writer:
            parsed = validate_frame(pd.concat(steps, ignore_index=True), "demo")
            writer.commit(parsed.readings, parsed.dead_letters)

    def version_store() -> str:
        version = snapshot(store, remote_config(settings.data.remote))
        summary.data_versions.append(version.data_version)
        return version.commit

    store_steps([next(stream) for _ in range(HISTORY_STEPS)])
    first = version_store()
    stage_done("data")
    decision = run_local(first, store, settings.state_dir / "kfp")
    summary.champion_before = decision["champion_version"]
    stage_done("train")

    port = config.port or free_port()
    log = (config.workdir / "serve.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "predmaint"), "serve", "--port", str(port), "--poll", "1"],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    traffic = Traffic(f"http://127.0.0.1:{port}/predict")
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/ready", server)
        stage_done("serve")

        def stream_steps(count: int) -> None:
            steps = []
            for _ in range(count):
                step = next(stream)
                traffic.send(step)
                steps.append(step)
                time.sleep(config.pace_seconds)
            store_steps(steps)

        def scheduled_check(at_step: int) -> None:
            began = time.monotonic()
            version_store()
            result = run_check(settings, trigger="local")
            summary.checks.append(
                Check(
                    at_step=at_step,
                    drift=result.drift,
                    retrain=result.retrain,
                    reason=result.reason,
                    p_values={name: f["p_value"] for name, f in result.features.items()},
                    seconds=round(time.monotonic() - began, 1),
                )
            )
            summary.drift_detected |= result.drift
            if result.retraining:
                summary.retrain_runs += 1
                summary.promotion = result.retraining

        stream_steps(CALM_STEPS)
        scheduled_check(onset)
        stage_done("calm")
        stream_steps(DRIFT_STEPS)
        stage_done("drift")
        # The retraining runs inside this check; the stream keeps flowing meanwhile.
        stop = threading.Event()
        background = threading.Thread(target=_keep_flowing, args=(traffic, stream, stop, config), daemon=True)
        background.start()
        scheduled_check(onset + DRIFT_STEPS)
        scheduled_check(onset + DRIFT_STEPS)  # the next scheduled check: the guard holds
        stop.set()
        background.join()
        stage_done("retrain")
        if summary.promotion and summary.promotion.get("promoted"):
            expected = str(summary.promotion["champion_version"])
            deadline = time.monotonic() + 30  # the service polls the alias every second
            while time.monotonic() < deadline and not any(
                a["version"] == expected for a in traffic.answers[-config.machines :]
            ):
                if not _send_next(traffic, stream):
                    break
            for _ in range(MEASURE_STEPS):
                if not _send_next(traffic, stream):
                    break
        stage_done("swap")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        log.close()

    drifted = [a for a in traffic.answers if a["step"] >= onset]
    summary.champion_after = traffic.answers[-1]["version"] if traffic.answers else None
    summary.live_f1_before = _f1([a for a in drifted if a["version"] == summary.champion_before])
    summary.live_f1_after = _f1([a for a in drifted if a["version"] == summary.champion_after])
    summary.requests, summary.failed_requests = traffic.requests, traffic.failed
    summary.readings_answered = len(traffic.answers)
    summary.seconds = round(time.monotonic() - started, 1)
    (config.workdir / "summary.json").write_text(json.dumps(asdict(summary), indent=2), encoding="utf-8")
    answers = pd.DataFrame(traffic.answers)
    answers.to_parquet(config.workdir / "answers.parquet")
    if len(answers):
        from predmaint.demo_report import render

        report = render(asdict(summary), answers)
        (config.workdir / "report.html").write_text(report, encoding="utf-8")
    return summary


def _send_next(traffic: Traffic, stream: Iterator[pd.DataFrame]) -> bool:
    step = next(stream, None)
    if step is None:
        return False
    traffic.send(step)
    return True


def _keep_flowing(
    traffic: Traffic, stream: Iterator[pd.DataFrame], stop: threading.Event, config: DemoConfig
) -> None:
    """Keep answering live readings while a check retrains (a step every 0.25 s, so the stream lasts)."""
    while not stop.is_set() and _send_next(traffic, stream):
        stop.wait(max(config.pace_seconds, 0.25))
