"""Polling one source once: the unit of work ``run`` schedules and ``backfill``
loops over (one worker, with or without burst, as arq has it).

A poll takes the source's lock, drains it, and either records the success or
classifies the failure, records it where ``status`` looks and logs it. A
failure of any kind, database errors included, is that source's alone: it
never reaches the caller, so the other sources go on (SPEC 5.2).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from edsync import sources
from edsync.backoff import next_delay
from edsync.errors import (
    AuthError,
    ConfigError,
    EdsyncError,
    GapError,
    MalformedPageError,
    RefusedError,
    RetriableError,
)
from edsync.mirror import Mirror, MirrorError, checkpoints
from edsync.mirror.ledger import PageResult
from edsync.model import Bounds
from edsync.ops.metrics import Health, Metrics
from edsync.rules import Rule
from edsync.run.drain import DrainResult, Progress, drain
from edsync.run.sharing import Fence, LocalLocks, SourceLocks
from edsync.run.stopping import Stopper
from edsync.settings import SourceSettings
from edsync.sources.base import Source

log = structlog.get_logger("edsync.runner")


def error_kind(exc: BaseException) -> str:
    """The ``kind`` label of ``edsync_errors_total``."""
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, GapError):
        return "gap"
    if isinstance(exc, RefusedError):
        return "refused"
    if isinstance(exc, MalformedPageError):
        return "malformed"
    if isinstance(exc, RetriableError):
        return "retriable"
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, MirrorError):
        return "mirror"
    if isinstance(exc, EdsyncError):
        return "fatal"
    return "internal"


def describe(exc: BaseException) -> str:
    """The error as ``status`` and the logs show it (a database error by what
    the database said: ``MirrorError``)."""
    if isinstance(exc, EdsyncError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class SourceState:
    failures: int = 0
    last_error: str | None = None
    cursor: str | None = None
    lag: int | None = None
    standby: bool = False


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll did: drained (``result``), failed (``error``), or stood by."""

    source: str
    result: DrainResult | None = None
    error: Exception | None = None
    failures: int = 0
    standby: bool = False

    @property
    def kind(self) -> str | None:
        return None if self.error is None else error_kind(self.error)

    @property
    def message(self) -> str | None:
        return None if self.error is None else describe(self.error)


class MetricsProgress(Progress):
    """Drain progress into the daemon's metrics."""

    def __init__(self, metrics: Metrics, inner: Progress | None = None) -> None:
        self.metrics = metrics
        self.inner = inner or Progress()
        self.started = time.perf_counter()

    def start(self, source: str, total: int | None) -> None:
        self.started = time.perf_counter()
        if total is not None:
            self.metrics.lag.labels(source).set(total)
        self.inner.start(source, total)

    def advance(self, source: str, result: PageResult) -> None:
        now = time.perf_counter()
        self.metrics.page_seconds.labels(source).observe(now - self.started)
        self.started = now
        for status, count in (
            ("applied", result.applied),
            ("stale", result.stale),
            ("quarantined", result.quarantined),
        ):
            if count:
                self.metrics.events.labels(source, status).inc(count)
        self.metrics.position.labels(source).set(result.cursor.position)
        self.inner.advance(source, result)

    def snapshot(self, source: str, entity: str, objects: int) -> None:
        self.inner.snapshot(source, entity, objects)


class Runner:
    """Polls one source once, for the daemon (``burst=False``) and ``backfill``.

    Sources are kept between polls and rebuilt when their settings change (a
    reload); ``close`` closes them and releases the sources' locks.
    """

    def __init__(
        self,
        engine: Mirror,
        stopper: Stopper,
        *,
        locks: SourceLocks | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        burst: bool = False,
    ) -> None:
        self.engine = engine
        self.stopper = stopper
        self.locks = locks or LocalLocks()
        self.metrics = metrics
        self.health = health
        self.burst = burst
        self.state: dict[str, SourceState] = {}
        self._sources: dict[str, tuple[SourceSettings, Source]] = {}

    def close(self) -> None:
        for _, source in self._sources.values():
            source.close()
        self._sources.clear()
        self.locks.release_all()

    def forget(self, name: str) -> None:
        """A source left the config."""
        self.state.pop(name, None)
        self._close_source(name)

    def handed_over(self, name: str) -> None:
        """Another process polls ``name`` now: keep nothing of it open here."""
        self._close_source(name)

    def _close_source(self, name: str) -> None:
        cached = self._sources.pop(name, None)
        if cached is not None:
            cached[1].close()

    def poll(
        self,
        settings: SourceSettings,
        rules: Sequence[Rule] = (),
        *,
        bounds: Bounds | None = None,
        reset: bool = False,
        progress: Progress | None = None,
    ) -> PollOutcome:
        name = settings.name
        if not self.locks.enter(name):
            return self._standby(name)
        try:
            return self._poll(settings, rules, bounds=bounds, reset=reset, progress=progress)
        finally:
            self.locks.leave(name)

    def _poll(
        self,
        settings: SourceSettings,
        rules: Sequence[Rule],
        *,
        bounds: Bounds | None,
        reset: bool,
        progress: Progress | None,
    ) -> PollOutcome:
        name = settings.name
        with self.stopper.working(name):
            try:
                if reset:
                    checkpoints.reset(self.engine, name)
                    log.info("cursor_reset", source=name)
                result = drain(
                    self.engine,
                    self._source(settings),
                    bounds=bounds,
                    on_invalid=settings.on_invalid,
                    progress=self._progress(progress),
                    stop=self.stopper.stop,
                    gate=Fence(self.stopper.gate, self.locks, name),
                    rules=rules,
                )
            # The isolation boundary of SPEC 5.2: whatever one source raises,
            # a database error or a bug, is recorded as its failure and the
            # others go on (arq's worker draws the same line around a job).
            except Exception as exc:  # noqa: BLE001
                return self._failed(settings, exc)
            finally:
                if self.burst:  # polled once: its connections are not needed again
                    self._close_source(name)
            return self._succeeded(name, result)

    def _source(self, settings: SourceSettings) -> Source:
        """The source for these settings, rebuilt after a reload changed them."""
        cached = self._sources.get(settings.name)
        if cached is not None and cached[0] is settings:
            return cached[1]
        if cached is not None:
            cached[1].close()
        source = sources.create(settings)
        self._sources[settings.name] = (settings, source)
        return source

    def _progress(self, progress: Progress | None) -> Progress | None:
        if self.metrics is None:
            return progress
        return MetricsProgress(self.metrics, progress)

    def _standby(self, name: str) -> PollOutcome:
        """Another process holds the source: wait, and try again next interval."""
        state = self.state.setdefault(name, SourceState())
        if not state.standby:
            log.info("source_standby", source=name, hint="another edsync run polls it")
        state.standby = True
        if self.health is not None:
            self.health.succeeded(name)
        if self.metrics is not None:
            self.metrics.polls.labels(name, "standby").inc()
        return PollOutcome(name, standby=True)

    def _succeeded(self, name: str, result: DrainResult) -> PollOutcome:
        state = self.state.setdefault(name, SourceState())
        state.failures = 0
        state.last_error = None
        state.standby = False
        state.cursor = result.cursor.value if result.cursor else state.cursor
        state.lag = result.lag
        if self.health is not None:
            self.health.succeeded(name)
        if self.metrics is not None:
            m = self.metrics
            outcome = "ok" if result.pages or result.pending is None else "skipped"
            m.polls.labels(name, outcome).inc()
            m.last_success.labels(name).set(time.time())
            m.failures.labels(name).set(0)
            m.healthy.labels(name).set(1)
            if result.lag is not None:
                m.lag.labels(name).set(result.lag)
        if self.burst:
            log.info(
                "source_drained",
                source=name,
                pages=result.pages,
                applied=result.applied,
                stale=result.stale,
                quarantined=result.quarantined,
                duplicates=result.duplicates,
                refreshed=result.refreshed,
                purged=result.purged,
                refresh_s=round(result.stages.refresh, 3),
                cursor=state.cursor,
                us_per_event=result.stages.per_event(result.received),
            )
        elif result.pages or result.refreshed or result.purged:
            log.info(
                "poll_done",
                source=name,
                applied=result.applied,
                refreshed=result.refreshed,
                purged=result.purged,
                lag=result.lag,
                cursor=state.cursor,
            )
        return PollOutcome(name, result=result)

    def _failed(self, settings: SourceSettings, exc: Exception) -> PollOutcome:
        name = settings.name
        state = self.state.setdefault(name, SourceState())
        state.failures += 1
        message = describe(exc)
        state.last_error = message
        kind = error_kind(exc)
        if self.health is not None:
            self.health.failed(name)
        if self.metrics is not None:
            m = self.metrics
            m.polls.labels(name, "error").inc()
            m.errors.labels(name, kind).inc()
            m.failures.labels(name).set(state.failures)
            healthy = self.health is None or self.health.is_healthy(name)
            m.healthy.labels(name).set(1 if healthy else 0)
        try:
            checkpoints.record_failure(self.engine, name, message)
        except MirrorError as db_exc:
            log.error("failure_not_recorded", source=name, error=describe(db_exc))
        # A bug, unlike a failure edsync knows, deserves its traceback.
        extra: dict[str, object] = {"exc_info": exc} if kind == "internal" else {}
        if not self.burst:
            extra["retry_in"] = round(next_delay(exc, settings.interval, state.failures), 1)
        log.error(
            "poll_failed", source=name, kind=kind, error=message, failures=state.failures, **extra
        )
        return PollOutcome(name, error=exc, failures=state.failures)
