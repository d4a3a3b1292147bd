"""`predmaint demo` runs the whole loop on real parts and ends with a better champion serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_the_demo_ends_with_a_new_champion_one_retraining_and_no_failed_request(tmp_path, browser):
    command = [
        str(Path(sys.executable).parent / "predmaint"),
        "demo",
        "--json",
        "--out-dir",
        str(tmp_path / "demo"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary == json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert int(summary["champion_after"]) > int(summary["champion_before"]), summary["promotion"]
    assert summary["drift_detected"] and summary["retrain_runs"] == 1
    assert summary["requests"] > 100 and summary["failed_requests"] == 0
    assert summary["live_f1_after"] > summary["live_f1_before"]
    first, drifted, again = summary["checks"]
    assert not first["retrain"] and drifted["retrain"] and not again["retrain"]
    # The third check sees a later window: it asks for no retraining, or the guard holds it back.
    assert "reported only" in again["reason"] or "not retraining" in again["reason"], again["reason"]
    assert len(summary["data_versions"]) == 4 and summary["seconds"] < 600
    assert "✓" in done.stderr and "kfp.local" in done.stderr  # the stages were reported as they ended

    from selenium.webdriver.common.by import By

    browser.get((tmp_path / "demo" / "report.html").as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == "predmaint demo"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#probabilities svg.machine")) == 20  # one per machine
    assert "version 2" in browser.find_element(By.ID, "versions").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#checks tr")) == 1 + 3
    assert "v1 → v2" in browser.find_element(By.CLASS_NAME, "cards").text
    assert browser.find_element(By.ID, "f1").size["height"] > 0  # laid out, not just present
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_the_demo_rejects_an_unknown_scenario(tmp_path):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "predmaint"), "demo", "--scenario", "meteor"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "meteor" in done.stderr


def _processes_of(workdir: Path) -> list[int]:
    """Processes whose environment names the demo's working directory (the demo and its children)."""
    found = []
    marker = f"PREDMAINT_STATE_DIR={workdir / 'state'}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path):
    import os
    import signal
    import time

    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "predmaint"), "demo", "--out-dir", str(workdir)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    seen = []
    for line in demo.stderr:  # wait until the service answers, then press Ctrl-C
        seen.append(line)
        if "answering /predict" in line:
            break
    assert any("answering /predict" in line for line in seen), "".join(seen)
    assert len(_processes_of(workdir)) >= 3  # the demo, gunicorn's arbiter and its workers
    os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, rest = demo.communicate(timeout=60)
    assert demo.returncode == 130, rest[-2000:]  # the CLI's exit code for an interrupt
    deadline = time.monotonic() + 30
    while _processes_of(workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_of(workdir) == []
