"""What was tried against predmaint and what happened: the table of docs/RELIABILITY.md.

A test that tries a fault or a class of bad input is marked
`@pytest.mark.reliability(boundary, tried, outcome)`: where it hits (HTTP ingestion, the store, …),
what it does to it, and what must happen (rejected, dead-lettered, survived). Tests that count
readings record what was lost with the fixture `record_reliability("readings_lost", n)`, and corpus
tests record the payload with `record_reliability("case", name)`. This module is a pytest plugin (loaded by
conftest.py) that gathers those rows when `--reliability-out FILE` is given, and a script:

    python tests/reliability.py          # what `make reliability` runs

runs every marked test, then writes docs/RELIABILITY.md from what they reported. A failed test is
a failed row in the table: nothing in it is typed by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "RELIABILITY.md"
BOUNDARIES = ("files", "HTTP ingestion", "MQTT ingestion", "/predict", "the store", "models", "drift guard")
_ROWS: list[dict[str, Any]] = []
_FIGURES = pytest.StashKey[dict[str, Any]]()


@pytest.fixture
def record_reliability(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """Record a figure of this test's row: `readings_lost`, or the `case` of a corpus test."""
    return request.node.stash.setdefault(_FIGURES, {}).__setitem__


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--reliability-out FILE`: write the rows of the marked tests that ran as JSON."""
    parser.addoption("--reliability-out", default=None, help="write the reliability rows (JSON) here")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker."""
    config.addinivalue_line(
        "markers",
        "reliability(boundary, tried, outcome): a row of docs/RELIABILITY.md (tests/reliability.py)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Attach the marker's row to the report of a marked test."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("reliability")
    if marker is not None:
        boundary, tried, expected = marker.args
        assert boundary in BOUNDARIES, f"{item.nodeid}: unknown boundary {boundary!r}"
        report.reliability = {
            "boundary": boundary,
            "tried": tried,
            "outcome": expected,
            "test": item.nodeid,
            "figures": dict(item.stash.get(_FIGURES, {})),
        }


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep one row per marked test: passed only when setup, call and teardown all passed."""
    row = getattr(report, "reliability", None)
    if row is None:
        return
    if report.when == "setup":
        _ROWS.append({**row, "passed": True, "skipped": False, "properties": {}})
    current = _ROWS[-1]
    current["passed"] = current["passed"] and report.passed
    current["skipped"] = current["skipped"] or report.skipped
    current["properties"].update(row["figures"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write the rows when asked to."""
    out = session.config.getoption("--reliability-out")
    if out:
        Path(out).write_text(json.dumps(_ROWS, indent=1), encoding="utf-8")


def _cases(rows: list[dict[str, Any]]) -> str:
    passed = sum(r["passed"] and not r["skipped"] for r in rows)
    return f"{passed} of {len(rows)}"


def _lost(rows: list[dict[str, Any]]) -> str:
    counted = [r["properties"]["readings_lost"] for r in rows if "readings_lost" in r["properties"]]
    return str(sum(counted)) if counted else "n/a"


def render(rows: list[dict[str, Any]], command: str) -> str:
    """The markdown of docs/RELIABILITY.md from the rows."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["boundary"], row["tried"], row["outcome"])].append(row)
    order = sorted(groups, key=lambda key: (BOUNDARIES.index(key[0]), key[1]))
    lines = [
        "# Reliability: what was tried, and what happened",
        "",
        f"Written by `{command}` (tests/reliability.py) from the tests it ran; do not edit by hand.",
        f"Machine: {_machine()}.",
        "",
        "Each row is one or more tests marked `@pytest.mark.reliability`. *Cases passed* counts the",
        "tests (one per payload for the corpus) that ran and passed; *readings lost* is what the tests",
        "that count readings measured (stored readings missing after the fault, against what was",
        "committed or acknowledged); n/a where the boundary stores no readings.",
        "",
        "| boundary | what was tried | what must happen | cases passed | readings lost | tests |",
        "|---|---|---|---:|---:|---|",
    ]
    for key in order:
        members = groups[key]
        tests = sorted({r["test"].split("[")[0].split("::")[-1] for r in members})
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {_cases(members)} | {_lost(members)} | "
            + ", ".join(f"`{t}`" for t in tests)
            + " |"
        )
    matrix = _corpus_matrix(rows)
    if matrix:
        lines += ["", *matrix]
    failed = [r["test"] for r in rows if not r["passed"] or r["skipped"]]
    lines += ["", f"Failed or skipped: {', '.join(failed)}." if failed else "Every case passed.", ""]
    return "\n".join(lines)


def _corpus_matrix(rows: list[dict[str, Any]]) -> list[str]:
    """The hostile corpus (tests/hostile.py) payload by payload, per boundary that ran it one by one."""
    by_case: dict[str, dict[str, bool]] = defaultdict(dict)
    for row in rows:
        case = row["properties"].get("case")
        if case is not None:
            by_case[case][row["boundary"]] = row["passed"] and not row["skipped"]
    if not by_case:
        return []
    columns = [b for b in BOUNDARIES if any(b in seen for seen in by_case.values())]
    lines = [
        "## The hostile corpus, payload by payload",
        "",
        "Each payload of `tests/hostile.py` sent on its own (✓: refused with a reason and the next good",
        "reading answered; ✗: failed). File ingestion reads the whole corpus as one file (row above).",
        "",
        "| payload | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for case in sorted(by_case):
        marks = ["✓" if by_case[case].get(c) else ("✗" if c in by_case[case] else "") for c in columns]
        lines.append(f"| {case} | " + " | ".join(marks) + " |")
    return lines


def _machine() -> str:
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import describe_machine

    return describe_machine()


def main(argv: list[str]) -> int:
    """Run every marked test, then write docs/RELIABILITY.md; exit 1 when a case failed."""
    out = ROOT / ".predmaint" / "reliability.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run([*command, f"--reliability-out={out}", *argv], cwd=ROOT)
    if not out.exists():
        print("pytest wrote no reliability rows", file=sys.stderr)
        return done.returncode or 1
    rows = json.loads(out.read_text(encoding="utf-8"))
    if not rows:
        print("no test is marked reliability", file=sys.stderr)
        return 1
    TARGET.write_text(render(rows, "make reliability"), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}: {len(rows)} cases", file=sys.stderr)
    return 0 if all(r["passed"] and not r["skipped"] for r in rows) and done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
