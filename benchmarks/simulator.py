"""Simulator throughput: `predmaint simulate` of 1,000,000 readings, beside an I/O floor.

The floor writes the same readings, already in memory, with the same writer: it is what
formatting and writing alone cost, so the ratio shows what simulating adds.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from predmaint.datasets import write_readings
from predmaint.simulator import SimulationSpec, simulate

READINGS = 1_000_000
FLEETS = [(20, 50_000), (1_000, 1_000)]  # (machines, steps): long histories and wide fleets
REPEATS = 3


def _best_of(func, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_rss_mib(cmd: list[str]) -> float:
    """Peak resident memory of a command, measured from a fresh parent process."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def run() -> tuple[str, list[str]]:
    """Measure and return (section title, markdown lines)."""
    predmaint = str(Path(sys.executable).parent / "predmaint")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for machines, steps in FLEETS:
            assert machines * steps == READINGS
            for suffix in (".jsonl", ".parquet"):
                out = Path(tmp) / f"fleet{suffix}"
                cmd = [
                    predmaint,
                    "simulate",
                    "-m",
                    str(machines),
                    "-s",
                    str(steps),
                    "--seed",
                    "1",
                    "-o",
                    str(out),
                    "-q",
                ]
                cli = _best_of(lambda cmd=cmd: subprocess.run(cmd, check=True))
                spec = SimulationSpec(machines=machines, steps=steps, seed=1)
                generate = _best_of(lambda spec=spec: sum(len(c) for c in simulate(spec)))
                frames = list(simulate(spec))
                floor = _best_of(lambda frames=frames, out=out: write_readings(frames, out))
                del frames
                rows.append((machines, steps, suffix, cli, generate, floor))
        memory = []
        for steps in (10_000, 100_000, 1_000_000):
            cmd = [
                predmaint,
                "simulate",
                "-m",
                "10",
                "-s",
                str(steps),
                "-o",
                str(Path(tmp) / "m.parquet"),
                "-q",
            ]
            memory.append((10 * steps, peak_rss_mib(cmd)))
    lines = [
        f"`predmaint simulate` of {READINGS:,} readings (best of {REPEATS}, wall clock, including process "
        "start-up). *Generate only*: the simulator's chunks in memory. *Write floor*: the same readings, "
        "already in memory, through the same writer — formatting and I/O alone.",
        "",
        "| fleet | format | `predmaint simulate` | readings/s | generate only | write floor | CLI ÷ floor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for machines, steps, suffix, cli, generate, floor in rows:
        lines.append(
            f"| {machines:,} machines × {steps:,} steps | {suffix[1:]} | {cli:.2f} s | {READINGS / cli:,.0f} "
            f"| {generate:.2f} s | {floor:.2f} s | {cli / floor:.2f} |"
        )
    lines += [
        "",
        "Memory stays flat as the run grows (peak resident memory of `predmaint simulate -m 10 -s N "
        "-o m.parquet`, one run each):",
        "",
        "| readings | peak RSS |",
        "|---:|---:|",
        *(f"| {readings:,} | {mib:.0f} MiB |" for readings, mib in memory),
    ]
    return "Fleet simulator", lines
