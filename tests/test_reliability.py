"""docs/RELIABILITY.md: written by tests/reliability.py from the marked tests, and kept current."""

from __future__ import annotations

import re
from pathlib import Path

import reliability

DOC = reliability.TARGET
FAULTS = {
    "SIGKILL": "SIGKILL",
    "ENOSPC": "ENOSPC",
    "lost checkpoint": "lost, older or corrupt checkpoint",
    "corrupt part": "corrupt part file",
    "broker restart": "broker restarts",
    "registry outage": "registry outage",
    "tampered model": "rewritten in the artifact store",
    "concurrent checks": "two concurrent checks",
}


def _row(test: str, passed: bool = True, **properties) -> dict:
    return {
        "boundary": "HTTP ingestion",
        "tried": "the hostile corpus",
        "outcome": "4xx",
        "test": f"tests/test_x.py::{test}",
        "passed": passed,
        "skipped": False,
        "properties": properties,
    }


def test_the_table_counts_cases_failures_and_lost_readings():
    rows = [
        _row("test_a[one]", case="one", readings_lost=0),
        _row("test_a[two]", passed=False, case="two", readings_lost=2),
        {**_row("test_b"), "boundary": "/predict", "tried": "forged labels"},
    ]
    text = reliability.render(rows, "make reliability")
    (http,) = [line for line in text.splitlines() if line.startswith("| HTTP ingestion |")]
    assert "| 1 of 2 | 2 | `test_a` |" in http
    (predict,) = [line for line in text.splitlines() if line.startswith("| /predict |")]
    assert "| 1 of 1 | n/a |" in predict
    assert "| one | ✓ |" in text and "| two | ✗ |" in text
    assert "Failed or skipped: tests/test_x.py::test_a[two]." in text


def _marked_tests() -> set[str]:
    found = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"@pytest\.mark\.reliability\((?:.|\n)*?\ndef (\w+)\(", text):
            found.add(match.group(1))
    return found


def test_the_committed_table_is_current_and_complete():
    text = DOC.read_text(encoding="utf-8")
    assert "Written by `make reliability`" in text
    missing = sorted(name for name in _marked_tests() if f"`{name}`" not in text)
    assert not missing, f"docs/RELIABILITY.md lacks {missing}: run `make reliability`"
    for fault, words in FAULTS.items():
        assert words in text, f"no row for {fault}"
    for boundary in reliability.BOUNDARIES:
        assert f"| {boundary} |" in text, boundary
    lost = [
        line.split("|")[5].strip() for line in text.splitlines() if line.startswith("| ") and "`test_" in line
    ]
    assert lost and set(lost) <= {"0", "n/a"}, lost
    assert "Every case passed." in text
