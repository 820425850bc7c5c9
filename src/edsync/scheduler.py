"""``edsync run``: the daemon's lifecycle (start, poll, reload, drain, stop).

APScheduler runs one interval job per source (no overlap, coalesced), a
publisher job for the outbox and, under systemd, a heartbeat that proves the
scheduler itself is alive. The main thread only waits for signals:

- SIGTERM/SIGINT: no new page starts; the page in flight commits; exit 0
  within 10 s even if a poll is stuck in a network wait (nothing uncommitted
  is lost: the cursor only moves with a commit).
- SIGHUP: reload the config; a bad one is refused and the old one keeps running.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from edsync import logs, sources
from edsync.config import Config, load_config
from edsync.coordination import Fence, source_locks, sqlite_run_lock
from edsync.errors import (
    AuthError,
    ConfigError,
    EdsyncError,
    GapError,
    MalformedPageError,
    RetriableError,
)
from edsync.lifecycle import STOP_BUDGET, leave_now
from edsync.metrics import Health, Metrics, MetricsServer
from edsync.mirror import checkpoints
from edsync.mirror.apply import PageResult
from edsync.mirror.sql import adapt
from edsync.publisher import Publisher
from edsync.rules import compile_rules
from edsync.sources.base import Source
from edsync.sync import DrainResult, Progress, drain
from edsync.systemd import Notifier

log = structlog.get_logger("edsync.daemon")

MAX_START_JITTER = 5.0
MAX_AUTH_BACKOFF = 3600.0
PUBLISH_INTERVAL = 5.0


def error_kind(exc: BaseException) -> str:
    """The ``kind`` label of ``edsync_errors_total``."""
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, GapError):
        return "gap"
    if isinstance(exc, MalformedPageError):
        return "malformed"
    if isinstance(exc, RetriableError):
        return "retriable"
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, SQLAlchemyError):
        return "mirror"
    return "fatal"


def next_delay(exc: BaseException, interval: float, failures: int) -> float:
    """How long a failing source waits before its next poll.

    A refused credential backs off exponentially (it will not fix itself
    soon, and hammering it may lock the key); a Retry-After is never undercut.
    """
    delay = interval
    if isinstance(exc, AuthError):
        delay = min(interval * 2 ** max(failures - 1, 0), max(interval, MAX_AUTH_BACKOFF))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


@dataclass(slots=True)
class SourceState:
    failures: int = 0
    last_error: str | None = None
    cursor: str | None = None
    lag: int | None = None
    standby: bool = False


class _MetricsProgress(Progress):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.started = time.perf_counter()

    def start(self, source: str, total: int | None) -> None:
        self.started = time.perf_counter()
        if total is not None:
            self.metrics.lag.labels(source).set(total)

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


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        engine: Engine,
        *,
        notifier: Notifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config_path = config_path
        self.config = config
        self.engine = engine
        self.notifier = notifier or Notifier()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.metrics = Metrics()
        self.health = Health(config.metrics.unhealthy_after if config.metrics else 900.0)
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()
        self.gate = threading.Lock()
        self.state: dict[str, SourceState] = {}
        self._sources: dict[str, tuple[Any, Source]] = {}
        self._running: set[str] = set()
        self._running_changed = threading.Condition()
        self.metrics_server: MetricsServer | None = None
        self.rules = compile_rules(config)
        self.publisher: tuple[Config, Publisher] | None = None
        self.locks = source_locks(engine)
        self.run_lock: IO[str] | None = None
        # Polls, the publisher and the heartbeat never wait for each other.
        workers = len(config.sources) + 3
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=dt.UTC,
        )

    # -- lifecycle ----------------------------------------------------------

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.run_lock = sqlite_run_lock(self.engine)  # before READY: a clear refusal
        self._install_signals()
        if self.config.metrics is not None:
            self.metrics_server = MetricsServer(self.config.metrics, self.metrics, self.health)
            self.metrics_server.start()
            host, port = self.metrics_server.address
            log.info("metrics_listening", address=f"{host}:{port}")
        self._schedule_all()
        self.scheduler.start()
        self.notifier.ready(self.summary())
        log.info("daemon_started", sources=list(self.config.sources))
        while not self.stop.is_set():
            self.wake.wait()
            self.wake.clear()
            if self.reload.is_set() and not self.stop.is_set():
                self.reload.clear()
                self.reload_config()
        return self.shutdown()

    def _install_signals(self) -> None:
        def on_stop(_signum: int, _frame: object) -> None:
            self.stop.set()
            self.wake.set()

        def on_hup(_signum: int, _frame: object) -> None:
            self.reload.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("daemon_stopping")
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + STOP_BUDGET
        with self._running_changed:
            self._running_changed.wait_for(
                lambda: not self._running, max(0.0, deadline - time.monotonic())
            )
            stuck = sorted(self._running)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if stuck:
            self.locks.release_all()
            # Polls blocked in a network wait cannot be interrupted; nothing
            # of theirs is uncommitted, so leave without them.
            leave_now(self.gate, stuck)
        self.locks.release_all()
        log.info("daemon_stopped")
        for _, source in self._sources.values():
            source.close()
        return 0

    # -- scheduling ---------------------------------------------------------

    def _schedule_all(self) -> None:
        for name in self.config.sources:
            self._schedule_source(name)
        self.scheduler.add_job(
            self.publish, "interval", seconds=PUBLISH_INTERVAL, id="publisher", name="publisher"
        )
        interval = self.notifier.watchdog_interval
        if interval:
            self.scheduler.add_job(
                self.heartbeat,
                "interval",
                seconds=interval,
                id="heartbeat",
                name="heartbeat",
                next_run_time=_now(),
            )
        self.health.track(set(self.config.sources))

    def _schedule_source(self, name: str) -> None:
        interval = self.config.sources[name].interval
        # Sources started together should not poll in lockstep.
        jitter = self.rng.uniform(0, min(interval / 10, MAX_START_JITTER))
        self.scheduler.add_job(
            self.poll,
            "interval",
            args=[name],
            seconds=interval,
            id=f"source:{name}",
            name=f"poll {name}",
            next_run_time=_now() + dt.timedelta(seconds=jitter),
            misfire_grace_time=max(1, int(interval)),
            replace_existing=True,
        )
        self.state.setdefault(name, SourceState())

    def reload_config(self) -> bool:
        """SIGHUP: take the new config if it is valid, else keep the old one."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("config_reload_refused", error=str(exc))
            self.notifier.ready(self.summary())
            return False
        if new.mirror != self.config.mirror:
            log.warning("mirror_change_ignored", hint="restart edsync to use a new mirror")
            new = replace(new, mirror=self.config.mirror)
        logs.configure(new.log)
        old = self.config
        self.config = new
        self.rules = compile_rules(new)
        for name in set(old.sources) - set(new.sources):
            self.scheduler.remove_job(f"source:{name}")
            self.state.pop(name, None)
        for name, settings in new.sources.items():
            if old.sources.get(name) != settings:
                self._schedule_source(name)
        self.health.track(set(new.sources))
        if set(new.sources) - set(old.sources) and new.mirror.auto_migrate:
            from edsync.mirror import views

            # A source added by the reload gets its views now, as at a start.
            kinds = {name: settings.kind for name, settings in new.sources.items()}
            views.ensure(self.engine, kinds, strict=False)
        log.info("config_reloaded", sources=list(new.sources))
        self.notifier.ready(self.summary())
        return True

    # -- jobs ---------------------------------------------------------------

    def _source(self, name: str) -> Source:
        """The source for the current settings, rebuilt after a reload changed them."""
        settings = self.config.sources[name]
        cached = self._sources.get(name)
        if cached is not None and cached[0] is settings:
            return cached[1]
        if cached is not None:
            cached[1].close()
        source = sources.create(settings)
        self._sources[name] = (settings, source)
        return source

    def poll(self, name: str) -> None:
        if self.stop.is_set() or name not in self.config.sources:
            return
        with self._running_changed:
            self._running.add(name)
        try:
            self._poll(name)
        finally:
            with self._running_changed:
                self._running.discard(name)
                self._running_changed.notify_all()

    def _poll(self, name: str) -> None:
        settings = self.config.sources[name]
        try:
            if not self.locks.acquire(name):
                self._standby(name)
                return
            result = drain(
                self.engine,
                self._source(name),
                on_invalid=settings.on_invalid,
                progress=_MetricsProgress(self.metrics),
                stop=self.stop,
                gate=Fence(self.gate, self.locks, name),
                rules=self.rules,
            )
        except (EdsyncError, SQLAlchemyError) as exc:
            self._failed(name, exc)
        else:
            self._succeeded(name, result)

    def _standby(self, name: str) -> None:
        """Another process holds the source: wait, and try again next interval."""
        state = self.state.setdefault(name, SourceState())
        if not state.standby:
            log.info("source_standby", source=name, hint="another edsync run polls it")
        state.standby = True
        self.health.succeeded(name)
        self.metrics.polls.labels(name, "standby").inc()

    def _succeeded(self, name: str, result: DrainResult) -> None:
        state = self.state.setdefault(name, SourceState())
        state.failures = 0
        state.standby = False
        state.cursor = result.cursor.value if result.cursor else state.cursor
        state.lag = result.lag
        self.health.succeeded(name)
        m = self.metrics
        m.polls.labels(name, "ok" if result.pages or result.pending is None else "skipped").inc()
        m.last_success.labels(name).set(time.time())
        m.failures.labels(name).set(0)
        m.healthy.labels(name).set(1)
        if result.lag is not None:
            m.lag.labels(name).set(result.lag)
        if result.pages:
            log.info(
                "poll_done",
                source=name,
                applied=result.applied,
                lag=result.lag,
                cursor=state.cursor,
            )

    def _failed(self, name: str, exc: BaseException) -> None:
        state = self.state.setdefault(name, SourceState())
        state.failures += 1
        state.last_error = str(exc)
        kind = error_kind(exc)
        self.health.failed(name)
        m = self.metrics
        m.polls.labels(name, "error").inc()
        m.errors.labels(name, kind).inc()
        m.failures.labels(name).set(state.failures)
        m.healthy.labels(name).set(1 if self.health.is_healthy(name) else 0)
        try:
            checkpoints.record_failure(self.engine, name, str(exc))
        except SQLAlchemyError as db_exc:
            log.error("failure_not_recorded", source=name, error=str(db_exc))
        interval = self.config.sources[name].interval
        delay = next_delay(exc, interval, state.failures)
        if delay > interval and not self.stop.is_set():
            job = self.scheduler.get_job(f"source:{name}")
            if job is not None:
                job.modify(next_run_time=_now() + dt.timedelta(seconds=delay))
        log.error(
            "poll_failed",
            source=name,
            kind=kind,
            error=str(exc),
            failures=state.failures,
            retry_in=round(delay, 1),
        )

    def _publisher(self) -> Publisher:
        """The publisher for the current sinks; rebuilt here, in its own job, after a reload."""
        config = self.config
        if self.publisher is not None and self.publisher[0] is config:
            return self.publisher[1]
        if self.publisher is not None:
            self.publisher[1].close()
        publisher = Publisher(self.engine, config)
        self.publisher = (config, publisher)
        return publisher

    def publish(self) -> None:
        """The outbox job: deliver what is due, then refresh the delivery gauges."""
        if self.stop.is_set():
            return
        if self.config.sinks:
            try:
                self._publisher().round()
            except SQLAlchemyError as exc:
                log.error("publisher_failed", error=str(exc))
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    adapt(
                        conn, "SELECT sink, status, COUNT(*) FROM deliveries GROUP BY sink, status"
                    )
                ).all()
        except SQLAlchemyError as exc:
            log.error("publisher_failed", error=str(exc))
            return
        counts = {(sink, status): n for sink, status, n in rows}
        for sink in self.config.sinks:
            for status in ("pending", "failed", "delivered"):
                self.metrics.deliveries.labels(sink, status).set(counts.get((sink, status), 0))

    def heartbeat(self) -> None:
        self.notifier.watchdog(self.summary())

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        parts = []
        for name in self.config.sources:
            state = self.state.get(name, SourceState())
            if state.failures:
                parts.append(f"{name}: failing x{state.failures}")
            elif state.standby:
                parts.append(f"{name}: standby")
            else:
                lag = "?" if state.lag is None else state.lag
                parts.append(f"{name}: cursor {state.cursor or '-'}, lag {lag}")
        return "; ".join(parts) or "no sources"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_daemon(config_path: Path, config: Config, engine: Engine) -> int:
    return Daemon(config_path, config, engine).serve()
