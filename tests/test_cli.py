"""The `predmaint` command as a user types it: output, summaries and one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from predmaint import schema
from predmaint.cli import main
from predmaint.datasets import read_readings

PREDMAINT = str(Path(sys.executable).parent / "predmaint")


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    return subprocess.run(
        [PREDMAINT, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_done_when_command_writes_40000_valid_readings(tmp_path):
    out = tmp_path / "x.jsonl"
    result = run("simulate", "--machines", "20", "--steps", "2000", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 40,000 readings of 20 machines" in result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 40_000
    for line in lines[::997]:  # the full frame is checked below, vectorised
        schema.validate_reading(json.loads(line))
    frame = read_readings(out)
    assert (schema.check_frame(frame) == "").all()
    assert (
        frame.groupby("machine_id")["seq"].apply(lambda s: s.is_monotonic_increasing and s.iloc[0] == 0).all()
    )


def test_same_seed_same_bytes(tmp_path):
    digests = []
    for name in ("a.jsonl", "b.jsonl"):
        assert (
            main(["simulate", "-m", "4", "-s", "300", "--seed", "7", "-o", str(tmp_path / name), "-q"]) == 0
        )
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert (
        main(["simulate", "-m", "4", "-s", "300", "--seed", "8", "-o", str(tmp_path / "c.jsonl"), "-q"]) == 0
    )
    assert hashlib.sha256((tmp_path / "c.jsonl").read_bytes()).hexdigest() != digests[0]


def test_stdout_streams_json_lines(capsys):
    assert main(["simulate", "-m", "2", "-s", "3", "--out", "-", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert [json.loads(line)["seq"] for line in lines] == [0, 0, 1, 1, 2, 2]


def test_parquet_output_and_json_summary(tmp_path, capsys):
    out = tmp_path / "fleet.parquet"
    code = main(
        [
            "simulate",
            "-m",
            "3",
            "-s",
            "50",
            "--scenario",
            "product_mix",
            "--onset",
            "10",
            "-o",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["readings"] == 150 and summary["machines"] == 3
    assert summary["scenario"] == "product_mix" and summary["onset"] == 10
    assert set(summary["failure_modes"]) == {"twf", "hdf", "pwf", "osf", "rnf"}
    assert summary["first_timestamp"] == "2026-01-01T00:00:00Z"
    assert len(read_readings(out)) == 150


def test_options_fall_back_to_params_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("simulator:\n  machines: 2\n  steps: 4\n  interval_seconds: 5\n")
    assert main(["simulate", "-o", "-", "-q"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8
    assert rows[-1]["timestamp"] == "2026-01-01T00:00:15Z"


def test_rate_paces_a_live_file(tmp_path):
    out = tmp_path / "live.jsonl"
    assert main(["simulate", "-m", "2", "-s", "10", "--rate", "200", "-o", str(out), "-q"]) == 0
    assert len(out.read_text().splitlines()) == 20


@pytest.mark.parametrize(
    "args, message",
    [
        (["simulate", "--machines", "0"], "Invalid value for '--machines'"),
        (["simulate", "--machines", "many"], "Invalid value for '--machines'"),
        (["simulate", "--steps", "-1"], "Invalid value for '--steps'"),
        (["simulate", "--seed", "-2"], "Invalid value for '--seed'"),
        (["simulate", "--scenario", "meteor"], "'meteor' is not one of"),
        (["simulate", "--onset", "-1"], "Invalid value for '--onset'"),
        (["simulate", "--rate", "0"], "--rate must be a positive number"),
        (["simulate", "--rate", "inf"], "--rate must be a positive number"),
        (["simulate", "--interval", "0"], "--interval must be a positive number"),
        (["simulate", "--start", "tomorrow"], "--start: 'tomorrow' is not ISO-8601"),
        (["simulate", "--start", "2026-01-01T00:00:00"], "must be UTC"),
        (["simulate", "--out", "fleet.txt"], "unsupported file extension"),
        (["simulate", "--out", "-", "--json"], "--json prints to stdout"),
        (["simulate", "--colour", "red"], "No such option: --colour"),
        (["simulat"], "No such command"),
    ],
)
def test_bad_options_get_one_line_and_exit_2(args, message, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.startswith("predmaint: error: ") and err.count("\n") == 1


def test_unwritable_path_gets_one_line_and_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("simulate", "-m", "1", "-s", "1", "--out", str(blocker / "x.jsonl"))
    assert result.returncode == 1
    assert result.stderr.startswith("predmaint: error: cannot write") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_malformed_option_from_the_shell_has_no_traceback():
    result = run("simulate", "--machines", "0")
    assert result.returncode == 2
    expected = "Invalid value for '--machines' / '-m': Input should be greater than or equal to 1"
    assert result.stderr == f"predmaint: error: {expected}\n"


def test_bad_params_file_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("simulator:\n  machines: -4\n")
    result = run("simulate", "-o", "-", cwd=tmp_path)
    assert result.returncode == 2
    assert "simulator.machines" in result.stderr and result.stderr.count("\n") == 1


def test_help_lists_commands_and_options():
    assert "simulate" in run("--help").stdout
    assert "simulate" in run().stdout  # no arguments: the help, not an error
    text = run("simulate", "--help").stdout
    for option in (
        "--machines",
        "--steps",
        "--seed",
        "--out",
        "--scenario",
        "--onset",
        "--rate",
        "--interval",
    ):
        assert option in text
    assert run("--version").stdout.startswith("predmaint ")


def test_config_prints_effective_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREDMAINT_SIMULATOR__SEED", "99")
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out)["simulator"]["seed"] == 99


def test_compare_puts_the_fleet_beside_the_real_file(tmp_path):
    result = run(
        "compare",
        cwd=tmp_path,
        env={"PREDMAINT_SIMULATOR__MACHINES": "5", "PREDMAINT_SIMULATOR__STEPS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "vs the AI4I 2020 file" in result.stdout
    assert "rate_machine_failure" in result.stdout
    assert len(read_readings(tmp_path / ".predmaint" / "compare" / "readings.parquet")) == 1000


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("short", "at least"), ("has a blank in it 0123456789", "printable ASCII")],
)
def test_serve_refuses_a_bad_token_file_before_starting(tmp_path, content, message):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    result = run("serve", "--port", "1", "--token-file", str(path))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    if content is not None:
        assert content not in result.stderr  # the reason, never the secret
