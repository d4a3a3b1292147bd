"""Run every benchmark and rewrite docs/BENCHMARKS.md (`python -m benchmarks.run` from the root)."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import ingest, simulator
from benchmarks.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]

BENCHMARKS = [simulator, ingest]


def main() -> None:
    """Run the benchmarks and write the report."""
    machine = describe_machine()
    sections = []
    for module in BENCHMARKS:
        print(f"running {module.__name__} …", file=sys.stderr, flush=True)
        title, lines = module.run()
        sections += [f"## {title}", "", *lines, ""]
    report = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); rerun it to reproduce. Figures are",
        "wall-clock times on the machine below; compare ratios measured in the same run, not",
        "absolute numbers across machines.",
        "",
        f"Machine: {machine}",
        "",
        *sections,
    ]
    target = ROOT / "docs" / "BENCHMARKS.md"
    target.write_text("\n".join(report), encoding="utf-8")
    print("\n".join(report))


if __name__ == "__main__":
    main()
