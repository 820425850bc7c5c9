"""The outbox: deliver pending signals to their sinks, at least once.

Each delivery is one attempt per round. A failure is rescheduled with capped,
jittered exponential backoff (never before a Retry-After) for the sink's
``retry_for`` (a day by default), counted from the first failed attempt; the
last attempt is made when that budget runs out, and if it fails too the
delivery turns ``failed`` and stays visible until ``edsync deliver
--retry-failed``. Sinks are idempotent per signal id, so at-least-once is
exactly-once in effect.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine

from edsync import sinks
from edsync.errors import AuthError, EdsyncError, RetriableError
from edsync.mirror import outbox
from edsync.mirror.outbox import Due, Outcome
from edsync.settings import Config
from edsync.sinks.base import Sink

log = structlog.get_logger("edsync.publisher")

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 3600.0  # after ~12 failures an attempt an hour (30-60 min with jitter)
ROUND_LIMIT = 500
BURST_WAIT = 120.0
"""The longest ``backfill`` waits on failing deliveries before it exits 1 and
leaves them pending in the outbox for ``run`` or ``deliver`` (a sink's day of
``retry_for`` would otherwise hold a burst job, and the daemon it conflicts
with, for a day)."""


@dataclass(slots=True)
class Report:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    pending: int = 0

    def add(self, other: Report) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.pending = other.pending


def _now() -> float:
    return time.time()  # looked up per call, so freezegun's clock reaches it


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="microseconds")


def _epoch(value: Any) -> float | None:
    """A timestamp column (ISO text on SQLite, datetime on PostgreSQL) in Unix seconds."""
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return when.timestamp()


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before attempt ``attempts + 1``: doubling, capped, then jittered."""
    base = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** max(attempts - 1, 0))
    return base * (0.5 + rng() / 2)


def next_attempt(
    now: float, deadline: float, attempts: int, retry_after: float | None = None
) -> float | None:
    """When to try again after failed attempt ``attempts``, or None once the
    budget is spent. The backoff is clipped to the deadline, so the last
    attempt falls when the budget ends; a Retry-After is honoured even past it."""
    if now >= deadline:
        return None
    return max(min(now + backoff(attempts), deadline), now + (retry_after or 0.0))


def burst_budget(config: Config) -> float:
    """How long ``backfill`` drains the outbox: the sinks' ``retry_for``, at most BURST_WAIT."""
    return min(BURST_WAIT, max((s.retry_for for s in config.sinks.values()), default=0.0))


class Publisher:
    def __init__(
        self, engine: Engine, config: Config, *, clock: Callable[[], float] = _now
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sinks: dict[str, Sink] = {name: sinks.create(s) for name, s in config.sinks.items()}
        self.retry_for = {name: float(s.retry_for) for name, s in config.sinks.items()}
        self._unknown: set[str] = set()

    def close(self) -> None:
        for sink in self.sinks.values():
            sink.close()

    def round(self, *, due_only: bool = True) -> Report:
        """One attempt for each delivery that is due (or every pending one)."""
        due = outbox.due(
            self.engine, everything=not due_only, now=_iso(self.clock()), limit=ROUND_LIMIT
        )
        report = Report()
        for delivery in due:
            self._attempt(delivery, report)
        report.pending = self.pending()
        return report

    def _attempt(self, delivery: Due, report: Report) -> None:
        signal_id, sink_name = delivery.signal.id, delivery.sink
        sink = self.sinks.get(sink_name)
        if sink is None:
            if sink_name not in self._unknown:
                self._unknown.add(sink_name)
                log.warning("delivery_for_unknown_sink", sink=sink_name)
            return
        attempts = delivery.attempts + 1
        try:
            sink.send(delivery.signal)
        except (RetriableError, AuthError) as exc:
            # A refused credential is retried too: it is fixed by a human, not by waiting
            # less, and the budget keeps the delivery until then.
            now = self.clock()
            started = _epoch(delivery.failing_since)
            since = now if started is None else started
            retry_after = getattr(exc, "retry_after", None)
            when = next_attempt(now, since + self.retry_for[sink_name], attempts, retry_after)
            if when is None:
                self._failed(
                    signal_id,
                    sink_name,
                    attempts=attempts,
                    error=str(exc),
                    since=since,
                    report=report,
                )
                return
            outcome = Outcome("pending", attempts, str(exc), _iso(when), None, _iso(since))
            outbox.record(self.engine, signal_id, sink_name, outcome)
            report.retried += 1
            log.warning(
                "delivery_retry",
                sink=sink_name,
                signal=signal_id,
                error=str(exc),
                attempts=attempts,
                retry_in=round(when - now, 2),
                failing_for=round(now - since, 2),
            )
        except EdsyncError as exc:
            # Refused for good (a 4xx other than auth): retrying cannot help.
            self._failed(
                signal_id,
                sink_name,
                attempts=attempts,
                error=str(exc),
                since=_epoch(delivery.failing_since),
                report=report,
            )
        else:
            outcome = Outcome("delivered", attempts, None, None, _iso(self.clock()), None)
            outbox.record(self.engine, signal_id, sink_name, outcome)
            report.delivered += 1

    def _failed(
        self,
        signal_id: str,
        sink: str,
        *,
        attempts: int,
        error: str,
        since: float | None,
        report: Report,
    ) -> None:
        since_text = _iso(since if since is not None else self.clock())
        outcome = Outcome("failed", attempts, error, None, None, since_text)
        outbox.record(self.engine, signal_id, sink, outcome)
        report.failed += 1
        log.error("delivery_failed", sink=sink, signal=signal_id, attempts=attempts, error=error)

    def pending(self) -> int:
        return outbox.pending_count(self.engine)

    def next_due(self) -> float | None:
        """Seconds until the earliest pending delivery is due, or None if none is."""
        when = _epoch(outbox.earliest_due(self.engine))
        return None if when is None else max(0.0, when - self.clock())

    def retry_failed(self) -> int:
        """``deliver --retry-failed``: failed deliveries become pending, due now."""
        return outbox.retry_failed(self.engine, _iso(self.clock()))

    def drain(self, budget: float, stop: threading.Event | None = None) -> Report:
        """Deliver until nothing is pending or ``budget`` seconds have passed."""
        deadline = self.clock() + budget
        total = Report()
        waiter = stop or threading.Event()
        while True:
            total.add(self.round())
            if total.pending == 0 or waiter.is_set():
                return total
            wait = self.next_due()
            if wait is None or self.clock() + wait > deadline:
                return total
            if wait > 0 and waiter.wait(wait):
                return total
