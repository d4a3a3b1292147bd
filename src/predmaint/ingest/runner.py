"""The ingestion loop: units from a source → parse → commit (with retries) → acknowledge."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from predmaint import schema
from predmaint.ingest.parse import Parsed, parse_items, validate_frame
from predmaint.ingest.sources import Unit
from predmaint.ingest.store import CommitResult, Counts, ReadingStore

log = logging.getLogger(__name__)


def parse_unit(
    unit: Unit, source_id: str, max_clock_skew: timedelta = schema.DEFAULT_MAX_CLOCK_SKEW
) -> Parsed:
    """Validate a unit's readings, whichever form they came in, against this machine's clock now."""
    bounds = schema.TimeBounds.from_clock(max_clock_skew)
    if unit.frame is not None:
        return validate_frame(unit.frame, source_id, bounds)
    return parse_items(unit.items, unit.item_positions, bounds)


def commit_with_retry(
    store: ReadingStore,
    parsed: Parsed,
    positions: dict[str, Any] | None,
    attempts: int = 8,
    max_wait: float = 10.0,
) -> CommitResult:
    """Commit a batch, retrying sink errors (disk full, I/O errors) with exponential backoff and jitter."""
    for attempt in Retrying(
        retry=retry_if_exception_type(OSError),
        wait=wait_random_exponential(multiplier=0.05, max=max_wait),
        stop=stop_after_attempt(attempts),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "store write failed (%s); retry %d of %d",
            state.outcome.exception(),
            state.attempt_number,
            attempts - 1,
        ),
    ):
        with attempt:
            return store.commit(parsed.readings, parsed.dead_letters, positions)
    raise AssertionError("unreachable")  # pragma: no cover


def run_ingest(
    source: Any,
    store: ReadingStore,
    stop: threading.Event,
    on_commit: Callable[[CommitResult], None] | None = None,
    retry_attempts: int = 8,
    max_clock_skew: timedelta = schema.DEFAULT_MAX_CLOCK_SKEW,
) -> Counts:
    """Ingest from `source` into an open `store` until the source ends or `stop` is set."""
    counts = Counts()
    for unit in source.units(store.position(source.id), stop):
        parsed = parse_unit(unit, source.id, max_clock_skew)
        positions = {source.id: unit.position} if unit.position is not None else None
        try:
            result = commit_with_retry(store, parsed, positions, attempts=retry_attempts)
        except BaseException as exc:
            unit.done(None, exc)
            raise
        unit.reply["errors"] = [
            {"position": d.position, "reason": d.reason} for d in (*parsed.dead_letters, *result.conflicts)
        ]
        unit.done(result)
        counts.add(result)
        log.info(
            "batch %d: %d accepted, %d duplicates, %d rejected",
            result.batch,
            result.accepted,
            result.duplicates,
            result.rejected,
        )
        if on_commit is not None:
            on_commit(result)
    return counts
