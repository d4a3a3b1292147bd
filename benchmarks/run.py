"""Run the benchmarks and rewrite their sections of docs/BENCHMARKS.md.

`python -m benchmarks.run` runs all of them; `python -m benchmarks.run serving` runs only the
named ones and keeps the other sections of the report as they were.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from benchmarks import cluster, drift, images, ingest, serving, simulator, store_memory
from benchmarks.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "BENCHMARKS.md"

BENCHMARKS = {
    "simulator": simulator,
    "ingest": ingest,
    "store_memory": store_memory,
    "serving": serving,
    "drift": drift,
    "images": images,
    "cluster": cluster,
}
HEADER = [
    "# Benchmarks",
    "",
    "Written by `make bench` (`python -m benchmarks.run [NAME …]`; names: simulator, ingest, store_memory,",
    "serving, drift, images, cluster); rerun it to reproduce. Figures are wall-clock times on the machine",
    "named in each section; compare ratios measured in the same run, not absolute numbers across machines.",
    "",
]


def _sections(text: str) -> dict[str, str]:
    """Existing `## Title` sections of the report, by title."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0].strip(): "## " + part.rstrip() + "\n" for part in parts}


def main(names: list[str]) -> None:
    """Run the named benchmarks (all when none) and write the report."""
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    chosen = names or list(BENCHMARKS)
    sections = _sections(TARGET.read_text(encoding="utf-8")) if TARGET.exists() else {}
    titles = []
    for name in BENCHMARKS:
        module = BENCHMARKS[name]
        if name not in chosen:
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        machine = describe_machine()
        title, lines = module.run()
        sections[title] = "\n".join([f"## {title}", "", f"Machine: {machine}", "", *lines, ""])
        titles.append(title)
    order = [
        "Fleet simulator",
        "Ingestion",
        "Store memory",
        "Serving",
        "Drift detection",
        "Container images",
        "Single-node cluster",
    ]
    ordered = [sections[t] for t in order if t in sections] + [
        v for t, v in sections.items() if t not in order
    ]
    TARGET.write_text("\n".join(HEADER) + "\n" + "\n".join(ordered), encoding="utf-8")
    for title in titles:
        print(sections[title])


if __name__ == "__main__":
    main(sys.argv[1:])
