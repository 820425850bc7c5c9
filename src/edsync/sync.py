"""Draining one source: fetch a page, normalize it, apply it, repeat.

Data flows one way, source → normalize → apply; the committed checkpoint is
the only cursor, so stopping at any point and starting again is safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from edsync.errors import FatalError
from edsync.mirror import checkpoints
from edsync.mirror.apply import Applier, PageResult
from edsync.normalize import Change, Cursor, normalize_page
from edsync.sources.base import Bounds, RawPage, Source

log = structlog.get_logger("edsync.sync")


class Progress:
    """Receives drain progress (a progress bar, metrics); does nothing by default."""

    def start(self, source: str, total: int | None) -> None:
        """``total``: events upstream after the cursor, when the feed can tell."""

    def advance(self, source: str, result: PageResult) -> None:
        """One page committed."""


@dataclass(slots=True)
class DrainResult:
    source: str
    pages: int = 0
    received: int = 0
    applied: int = 0
    stale: int = 0
    quarantined: int = 0
    duplicates: int = 0
    cursor: Cursor | None = None
    stopped: bool = False
    pending: int | None = None  # upstream's count past the cursor when the drain began

    @property
    def lag(self) -> int | None:
        """Events still upstream past the cursor, as far as the feed told us."""
        if self.pending is None:
            return None
        return max(0, self.pending - self.received)

    def add(self, page: PageResult) -> None:
        self.pages += 1
        self.received += page.received
        self.applied += page.applied
        self.stale += page.stale
        self.quarantined += page.quarantined
        self.duplicates += page.duplicates
        self.cursor = page.cursor


class InvalidEventStopError(FatalError):
    """``on_invalid = "stop"`` and an event could not be normalized."""


def drain(
    engine: Engine,
    source: Source,
    *,
    bounds: Bounds | None = None,
    on_invalid: str = "quarantine",
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    gate: AbstractContextManager[object] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> DrainResult:
    """Apply every page after the committed cursor; stop early when ``stop`` is set.

    ``gate`` is held while a page is applied, so a shutdown can wait for the
    page in flight to commit and then keep any other from starting.
    """
    gate = gate or nullcontext()
    bounds = bounds or Bounds()
    progress = progress or Progress()
    applier = Applier(engine, source.name, source.person_entity)
    checkpoint = checkpoints.load(engine, source.name)
    cursor = checkpoint.cursor if checkpoint else None
    result = DrainResult(source.name, cursor=cursor)
    total = result.pending = source.pending(cursor, bounds)
    progress.start(source.name, total)
    if total != 0:
        for page in source.pages(cursor, bounds):
            started = clock()
            changes, page_cursor, bad = _cut(page, on_invalid, source)
            if changes:
                with gate:
                    applied = applier.apply(changes, page_cursor)
                result.add(applied)
                progress.advance(source.name, applied)
                _log_page(source.name, applied, clock() - started)
            if bad is not None:
                raise InvalidEventStopError(
                    f"source {source.name!r} stopped at event {bad.event_id}: {bad.invalid} "
                    '(on_invalid = "stop"; fix it upstream or set on_invalid = "quarantine")'
                )
            if stop is not None and stop.is_set():
                result.stopped = True
                break
    checkpoints.record_success(engine, source.name, result.lag)
    return result


def _cut(
    page: RawPage, on_invalid: str, source: Source
) -> tuple[list[Change], Cursor, Change | None]:
    changes = normalize_page(page.events, source.normalize)
    if on_invalid != "stop":
        return changes, page.cursor, None
    for index, change in enumerate(changes):
        if change.invalid is not None:
            if index == 0:
                return [], page.cursor, change
            before = changes[index - 1]
            return changes[:index], Cursor(before.event_id, before.position), change
    return changes, page.cursor, None


def _log_page(source: str, page: PageResult, seconds: float) -> None:
    log.info(
        "page_applied",
        source=source,
        count=page.received,
        applied=page.applied,
        stale=page.stale,
        quarantined=page.quarantined,
        duplicates=page.duplicates,
        cursor=page.cursor.value,
        duration_ms=round(seconds * 1000, 1),
    )
