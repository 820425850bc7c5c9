"""After a feed's pages: read again what they named, and what upstream purged.

For a kind whose events are notifications (``Source.refresher``), the pages
only queue resources (``Change.refresh``); their records are written here,
from each resource's own read, in the same poll. Upstream's purges, which
come with no event, are read every ``purge_interval``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import structlog

from edsync.mirror import checkpoints
from edsync.mirror.apply import Applier
from edsync.sources.base import Refresher

log = structlog.get_logger("edsync.sync")

REFRESH_BATCH = 500
"""Resources read before a commit: room for a batch read's 400 applicants
among the resources read alone (at a quota of 180 a minute, a commit at
least every few minutes)."""


def purge_due(last: dt.datetime | None, now: dt.datetime, interval: float | None) -> bool:
    """Whether the purges are read now: never read, or read ``interval`` ago."""
    if interval is None:
        return False
    return last is None or (now - last).total_seconds() >= interval


@dataclass(slots=True)
class Refreshing:
    """One poll's refresh: what it needs of the drain, and what it did."""

    applier: Applier
    refresher: Refresher
    gate: AbstractContextManager[object]
    stop: threading.Event | None
    report: Callable[[int], None]  # resources read, after each commit
    refreshed: int = 0
    purged: int = 0

    def purge_if_due(self, now: dt.datetime | None = None) -> None:
        engine, source = self.applier.engine, self.applier.source
        now = now or dt.datetime.now(dt.UTC)
        if not purge_due(checkpoints.purged_at(engine, source), now, self.refresher.purge_interval):
            return
        for gone in self.refresher.purged():
            with self.gate:
                self.purged += self.applier.apply_purges(gone)
        checkpoints.record_purged(engine, source, now)
        log.info("purges_read", source=source, purged=self.purged)

    def drain_queue(self) -> bool:
        """Read every queued resource; False if a stop request cut it short."""
        while True:
            batch = self.applier.queued(REFRESH_BATCH)
            if not batch:
                return True
            found = self.refresher.refresh([queued.ref for queued in batch])
            results = list(zip(found, batch, strict=True))
            with self.gate:
                written = self.applier.apply_refreshed(results)
            self.refreshed += len(results)
            self.report(len(results))
            log.info(
                "refresh_applied",
                source=self.applier.source,
                resources=len(results),
                records=written,
            )
            if self.stop is not None and self.stop.is_set():
                return False
