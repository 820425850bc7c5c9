"""The daemon's side of webhooks: its listeners, and the polls they wake.

A webhook accepted for a source this process polls wakes that source's poll
through its gate (``wakes``): a woken poll is a one-off job on the poll
pool, with its own id, so the interval job's no-overlap rule never drops it,
and the request pacing is the same as any poll's (the same source, the same
paced client). A source held off by its back-off (a refused key, a
Retry-After past the interval) is not woken: the back-off decides when it is
tried again.

Every accepted webhook's time is written to the mirror, where ``status``
reads it. On PostgreSQL the webhook may reach a process that does not poll
the source (the proxy picks one): that process answers 204 and writes the
time, and the process that polls the source finds it on its next
coordination round (within 15 s) and wakes the poll then.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from edsync.mirror import Mirror, MirrorError, checkpoints
from edsync.run.wakes import Wakes
from edsync.run.webhooks import Webhooks

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from edsync.ops.metrics import Metrics
    from edsync.settings import Config

log = structlog.get_logger("edsync.webhooks")

Job = Callable[[str, float | None], None]
"""The daemon's poll job: the source, and a woken poll's ticket."""


class Waker:
    def __init__(
        self,
        scheduler: BaseScheduler,
        job: Job,
        metrics: Metrics,
        engine: Mirror,
        *,
        holds: Callable[[str], bool],
        stop: threading.Event,
    ) -> None:
        """``holds``: whether this process polls the source now."""
        self.scheduler = scheduler
        self.job = job
        self.metrics = metrics
        self.engine = engine
        self.holds = holds
        self.stop = stop
        self.wakes = Wakes()
        self.webhooks = Webhooks(self.accepted, self.rejected)
        self.held_off: dict[str, float] = {}  # source → when its back-off ends (monotonic)
        self.seen: dict[str, dt.datetime] = {}  # source → its webhook time last read or written
        self.read_once = False
        self._ids = itertools.count()

    # -- the listeners -------------------------------------------------------

    def listen(self, config: Config) -> None:
        """Serve the webhooks ``config`` names (FatalError: an address refused)."""
        self.webhooks.apply(config)

    def close(self) -> None:
        self.webhooks.close()

    def accepted(self, source: str) -> None:
        """A webhook for ``source`` was answered 204 (in the listener's thread).
        Counted last: once the count shows it, its wake and its time are in."""
        now = dt.datetime.now(dt.UTC)
        self.wake(source)
        self.seen[source] = now  # before writing it: the coordinator must not wake it again
        try:
            checkpoints.record_webhook(self.engine, source, now)
        except MirrorError as exc:
            log.warning("webhook_not_recorded", source=source, error=exc.said)
        log.debug("webhook_received", source=source)
        self.metrics.webhooks.labels(source).inc()

    def rejected(self, source: str, reason: str) -> None:
        self.metrics.webhooks_rejected.labels(source, reason).inc()

    # -- the polls -------------------------------------------------------------

    def wake(self, source: str) -> None:
        """Poll ``source`` soon, if this process polls it (coalesced: ``Wakes``)."""
        if self.stop.is_set() or not self.holds(source):
            return
        due = self.wakes.wake(source)
        if due is not None:
            self._schedule(source, due)

    def start(self, source: str, ticket: float | None) -> bool:
        """A poll job of ``source`` begins: whether it polls (``Wakes.start``)."""
        go = self.wakes.start(source, ticket)
        if go and ticket is not None:
            self.metrics.woken.labels(source).inc()
        return go

    def finish(self, source: str, held_for: float | None = None) -> None:
        """A poll of ``source`` ended; ``held_for``: the seconds its back-off
        holds the next poll off, if it failed so."""
        if held_for is None:
            self.held_off.pop(source, None)
        else:
            self.held_off[source] = time.monotonic() + held_for
        due = self.wakes.finish(source)
        if due is not None:
            self._schedule(source, due)

    def forget(self, source: str) -> None:
        self.wakes.forget(source)
        self.held_off.pop(source, None)

    def _schedule(self, source: str, due: float) -> None:
        if self.held_off.get(source, 0.0) > time.monotonic():
            # Left due: later wakes coalesce into it, and the next poll the
            # back-off lets through clears it.
            log.debug("webhook_wake_held_off", source=source)
            return
        delay = max(0.0, due - self.wakes.clock())
        self.scheduler.add_job(
            self.job,
            "date",
            run_date=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay),
            args=[source, due],
            id=f"wake:{source}:{next(self._ids)}",
            name=f"woken poll {source}",
            misfire_grace_time=None,  # however busy the pool, a woken poll still runs
        )

    # -- webhooks another process received (PostgreSQL) ---------------------------

    def from_mirror(self, config: Config) -> None:
        """Wake the sources whose webhook time in the mirror moved since it was
        last read here (another daemon received it)."""
        if not any(settings.hook() for settings in config.sources.values()):
            return
        try:
            times = checkpoints.webhook_times(self.engine)
        except MirrorError as exc:
            log.warning("webhook_times_unread", error=exc.said)
            return
        for source, when in times.items():
            seen = self.seen.get(source)
            self.seen[source] = when
            # The first read is the baseline: what came before it, the first
            # poll (at start, or on taking a source over) reads anyway.
            new = seen is None or when > seen
            if self.read_once and new and source in config.sources:
                self.wake(source)
        self.read_once = True
