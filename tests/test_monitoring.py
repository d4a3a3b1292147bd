"""Drift checks: detection, the harm-based retrain policy, its guard, and clear errors for bad windows."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from predmaint import monitoring
from predmaint.config import load_settings
from predmaint.monitoring import DriftError, RetrainGuard, check, decide
from predmaint.scenarios import Scenario
from predmaint.simulator import SimulationSpec, simulate


def _fleet(scenario: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A steady-state reference (steps 300–329) and a window after the onset (steps 340–349)."""
    frame = pd.concat(
        simulate(SimulationSpec(machines=100, steps=350, seed=2, scenario=scenario, onset=330)),
        ignore_index=True,
    )
    return frame[(frame.seq >= 300) & (frame.seq < 330)], frame[frame.seq >= 340]


@pytest.mark.parametrize(
    "scenario, expected",
    [
        (Scenario.sensor_bias, "torque_nm"),
        (Scenario.cooling_degradation, "delta_t_k"),
        (Scenario.product_mix, "product_type"),
        (Scenario.noisy_sensors, "power_w"),
    ],
)
def test_each_scenario_is_detected_where_it_happens(scenario, expected):
    reference, current = _fleet(scenario)
    result = check(reference, current)
    assert result.drift and result.features[expected]["drifted"], result.features
    assert not result.retrain  # without a model there is no retrain decision


def test_shuffled_windows_of_the_real_file_rarely_drift(ai4i):
    # no drift by construction: reference and window drawn at random from the same file
    alarms = [
        check(ai4i.sample(3000, random_state=200 + i), ai4i.sample(1000, random_state=100 + i)).drift
        for i in range(10)
    ]
    assert sum(alarms) <= 1  # the tests run at 5 %, Bonferroni-corrected


def test_with_the_champion_prediction_drift_and_performance_are_judged(served_bundle):
    reference, current = _fleet(Scenario.cooling_degradation)
    result = check(reference, current, bundle=served_bundle, champion_version="3")
    assert result.prediction_drift is not None and 0 <= result.prediction_drift["p_value"] <= 1
    assert result.performance is not None and result.performance["labelled"] == len(current)
    assert result.champion_version == "3" and len(result.idempotency_key) == 16


def _features(*drifted: str) -> dict:
    return {
        name: {
            "test": "ks",
            "statistic": 0.5,
            "p_value": 0.0 if name in drifted else 0.9,
            "drifted": name in drifted,
        }
        for name in monitoring.DRIFT_FEATURES
    }


MOVED = {"drifted": True, "p_value": 0.0, "statistic": 0.3, "reference_mean": 0.03, "current_mean": 0.08}
STILL = MOVED | {"drifted": False, "p_value": 0.4}


@pytest.mark.parametrize(
    "features, predictions, perf, retrain, phrase",
    [
        (_features(), STILL, None, False, "no drift"),
        (_features("torque_nm"), MOVED, None, True, "relies on drifted (torque_nm)"),
        (_features("torque_nm"), STILL, None, False, "predictions did not move"),
        (_features("air_temperature_k"), MOVED, None, False, "barely uses"),
        (
            _features(),
            STILL,
            {"dropped": True, "f1": 0.5, "test_f1": 0.8, "labelled": 900},
            True,
            "performance fell",
        ),
    ],
)
def test_policy_retrains_on_harm_not_on_difference(features, predictions, perf, retrain, phrase):
    drift, decided, reason = decide(features, predictions, perf, {"torque_nm", "power_w", "delta_t_k"})
    assert decided is retrain and phrase in reason


def test_guard_allows_one_run_per_situation_and_a_cooldown(tmp_path):
    guard = RetrainGuard(tmp_path / "state.json", timedelta(hours=6))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert guard.blocked("a", now) is None
    guard.record("a", "run-1", now)
    assert "already triggered" in guard.blocked("a", now + timedelta(days=3))
    assert "cooldown" in guard.blocked("b", now + timedelta(hours=1))
    assert guard.blocked("b", now + timedelta(hours=7)) is None
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(DriftError, match="unreadable retrain state"):
        guard.blocked("b", now)


def _check_in_another_process(state: str, started: str, barrier, results) -> None:
    import time

    def start() -> str:
        with open(started, "a") as out:  # noqa: PTH123 - a plain append is the point
            out.write("run\n")
        time.sleep(0.5)  # a trigger takes time: the other check arrives while it runs
        return "run-1"

    barrier.wait()
    guard = RetrainGuard(Path(state), timedelta(hours=6))
    blocked, run = guard.start_once("same-situation", datetime(2026, 1, 1, tzinfo=UTC), start)
    results.put((blocked, run))


@pytest.mark.reliability(
    "drift guard", "two concurrent checks in two processes", "one retraining run started"
)
def test_two_concurrent_checks_in_two_processes_start_one_run(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    args = (str(tmp_path / "state.json"), str(tmp_path / "started"), barrier, results)
    workers = [context.Process(target=_check_in_another_process, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    outcomes = sorted((results.get(timeout=5) for _ in workers), key=lambda o: o[0] is not None)
    assert (tmp_path / "started").read_text() == "run\n"
    assert outcomes[0] == (None, "run-1") and "already triggered" in outcomes[1][0]


def test_repeated_checks_of_one_situation_start_one_run(tmp_path, monkeypatch, served_bundle):
    from predmaint import watch

    reference, current = _fleet(Scenario.sensor_bias)
    reference.to_parquet(tmp_path / "ref.parquet")
    current.to_parquet(tmp_path / "cur.parquet")
    started = []
    monkeypatch.setattr(watch, "champion", lambda settings: (served_bundle, "3", "run"))
    monkeypatch.setattr(
        watch, "_trigger", lambda kind, settings: started.append(kind) or {"run_id": f"run-{len(started)}"}
    )
    monkeypatch.setattr(
        monitoring, "decide", lambda *args: (True, True, "features the model relies on drifted (torque_nm)")
    )
    settings = load_settings(state_dir=tmp_path / "state")
    results = [
        watch.run_check(
            settings,
            reference_path=tmp_path / "ref.parquet",
            current_path=tmp_path / "cur.parquet",
            trigger="local",
            report_path=tmp_path / f"report-{i}.html",
        )
        for i in range(3)
    ]
    assert started == ["local"] and results[0].triggered_run == "run-1"
    assert [r.retrain for r in results] == [True, False, False]
    assert "already triggered" in results[1].reason
    assert "<svg" in (tmp_path / "report-0.html").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.head(10), "needs at least 50"),
        (lambda f: f.assign(colour="red"), "unknown column(s) colour"),
        (lambda f: f.drop(columns=["torque_nm"]), "lacks column(s) torque_nm"),
    ],
)
def test_bad_windows_get_a_message_not_a_decision(ai4i, change, message):
    with pytest.raises(DriftError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(ai4i.head(3000), change(ai4i.iloc[3000:4000]))


def test_cli_on_two_files_prints_one_json_decision_and_writes_a_report(tmp_path):
    reference, current = _fleet(Scenario.product_mix)
    reference.to_parquet(tmp_path / "ref.parquet")
    current.to_parquet(tmp_path / "cur.parquet")
    command = [str(Path(sys.executable).parent / "predmaint"), "drift", "check", "--no-model", "--json"]
    command += ["--reference", str(tmp_path / "ref.parquet"), "--current", str(tmp_path / "cur.parquet")]
    command += ["--report", str(tmp_path / "report.html")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["drift"] is True and result["features"]["product_type"]["drifted"] is True
    assert {"drift", "features", "prediction_drift", "performance", "retrain", "reason"} <= set(result)
    [log_line] = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"event"')]
    assert log_line["event"] == "drift_check" and "product_type" in log_line["drifted_features"]
    assert "product_type" in (tmp_path / "report.html").read_text()
    missing = subprocess.run([*command[:5], "--reference", "nowhere.parquet"], capture_output=True, text=True)
    assert missing.returncode == 2 and "nowhere.parquet: no such file" in missing.stderr


def test_a_significant_but_small_move_is_not_drift():
    reference, current = _fleet(Scenario.cooling_degradation)
    strict = monitoring.feature_drift(reference, current, min_effect=0.9)
    loose = monitoring.feature_drift(reference, current, min_effect=0.0)
    assert loose["delta_t_k"]["drifted"] and not strict["delta_t_k"]["drifted"]
    assert 0.3 < loose["delta_t_k"]["effect"] < 0.9  # KS distance of a 1.5 K shift with sd ≈ 1 K
    mix = monitoring.feature_drift(*_fleet(Scenario.product_mix))
    assert mix["product_type"]["drifted"] and 0.2 < mix["product_type"]["effect"] <= 0.5  # L/M/H shares


def test_prediction_drift_uses_the_held_out_probabilities_it_is_given(served_bundle):
    from predmaint.model import predict_readings

    reference, current = _fleet(Scenario.none)
    same = predict_readings(served_bundle, current, explain=False)["failure_probability"].to_numpy()
    result = check(reference, current, bundle=served_bundle, reference_probabilities=same)
    assert result.prediction_drift["statistic"] == 0 and not result.prediction_drift["drifted"]
    shifted = check(reference, current, bundle=served_bundle, reference_probabilities=same + 0.5)
    assert shifted.prediction_drift["drifted"]


def test_a_scheduled_check_before_the_first_champion_says_so_and_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDMAINT_MLFLOW__TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("PREDMAINT_STATE_DIR", str(tmp_path / "state"))
    command = [str(Path(sys.executable).parent / "predmaint"), "drift", "check", "--trigger", "kfp", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert not result["drift"] and not result["retrain"] and "no champion" in result["reason"]
    [log_line] = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"event"')]
    assert log_line["reason"] == result["reason"] and log_line["drifted_features"] == []
    refused = subprocess.run(
        [*command[:3], "--no-model", "--json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert (
        refused.returncode == 1 and "no reference" in refused.stderr
    )  # without a model, a reference is needed
