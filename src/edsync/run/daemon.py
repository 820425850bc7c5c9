"""``edsync run``: the daemon's lifecycle (start, poll, reload, drain, stop).

APScheduler runs one interval job per source (no overlap, coalesced), a
publisher job for the outbox and, under systemd, a heartbeat that proves the
scheduler itself is alive. The main thread only waits for signals:

- SIGTERM/SIGINT: no new page starts; the page in flight commits; exit 0
  within 10 s even if a poll is stuck in a network wait (nothing uncommitted
  is lost: the cursor only moves with a commit).
- SIGHUP: reload the config; a bad one is refused and the old one keeps running.

Where a source's config has a webhook, a listener answers its upstream's
POSTs and wakes that source's poll (``waking``); the interval job stays on,
the safety net for a webhook that never comes.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO

import structlog

from edsync.backoff import next_delay
from edsync.config import load_config
from edsync.errors import ConfigError, FatalError
from edsync.http import on_request, on_retry
from edsync.mirror import Mirror, MirrorError, outbox
from edsync.ops import logs
from edsync.ops.metrics import Health, Metrics, MetricsServer
from edsync.ops.systemd import Notifier
from edsync.publisher import Publisher
from edsync.run.runner import PollOutcome, Runner, SourceState
from edsync.run.sharing import (
    Handover,
    SharedLocks,
    release_run_lock,
    source_locks,
    sqlite_run_lock,
)
from edsync.run.stopping import Stopper
from edsync.run.waking import Waker
from edsync.settings import Config

__all__ = ["Daemon"]

log = structlog.get_logger("edsync.daemon")

MAX_START_JITTER = 5.0
PUBLISH_INTERVAL = 5.0
POLL_WORKERS = 8
SETTLE_STEP = 1.0
"""Seconds between a daemon's coordination rounds for its first period."""
"""Polls at once, whatever the number of sources (SPEC 8: a bounded pool)."""


def coordination_interval(intervals: Iterable[float]) -> float:
    """How often a daemon rebalances its share of the sources: twice per
    shortest polling interval, so a dead daemon's sources are polled again
    within two intervals (SPEC 8), and never busier than twice a second."""
    shortest = min(intervals, default=60.0)
    return min(max(shortest / 2, 0.5), 15.0)


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        engine: Mirror,
        *,
        notifier: Notifier | None = None,
        rng: random.Random | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        """``stopper``: the CLI's, whose signal handlers (``Stopper.on_signals``)
        stop the daemon and, by ``reload``, reload its config."""
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config_path = config_path
        self.config = config
        self.engine = engine
        self.notifier = notifier or Notifier()
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.metrics = Metrics()
        self.health = Health(config.metrics.unhealthy_after if config.metrics else 900.0)
        self.stopper = stopper or Stopper()
        self.stop, self.wake = self.stopper.stop, self.stopper.wake
        self.reload = threading.Event()
        self.locks = source_locks(engine)
        self.runner = Runner(
            engine,
            self.stopper,
            locks=self.locks,
            metrics=self.metrics,
            health=self.health,
        )
        self.state: dict[str, SourceState] = self.runner.state
        self.metrics_server: MetricsServer | None = None
        self.rules = config.compiled_rules
        self.publisher: tuple[Config, Publisher] | None = None
        self.run_lock: IO[str] | None = None
        self._unhook: Callable[[], None] = _nothing
        self.stopper.before_leaving.append(self._release)
        # Polls share a bounded pool; the publisher, the heartbeat and the
        # coordinator have their own, so a slow poll never holds them up.
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(POLL_WORKERS),
                "control": ThreadPoolExecutor(3),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=dt.UTC,
        )
        self.waker = Waker(
            self.scheduler, self.poll, self.metrics, engine, holds=self._holds, stop=self.stop
        )

    # -- lifecycle ----------------------------------------------------------

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.run_lock = sqlite_run_lock(self.engine)  # before READY: a clear refusal
        unhook_retries = on_retry(self._count_retry)
        unhook_requests = on_request(self.metrics.count_request)

        def unhook() -> None:
            unhook_retries()
            unhook_requests()

        self._unhook = unhook
        try:
            self.waker.listen(self.config)
        except FatalError:
            self._release()  # leaves no run lock behind
            raise
        if self.config.metrics is not None:
            self.metrics_server = MetricsServer(self.config.metrics, self.metrics, self.health)
            self.metrics_server.start()
            host, port = self.metrics_server.address
            log.info("metrics_listening", address=f"{host}:{port}")
        self._schedule_all()
        self.coordinate()  # before the first polls: they run on what it claims
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

    def request_stop(self) -> None:
        self.stopper.request_stop()

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("daemon_stopping")
        self.waker.close()  # no new wake from here on
        self.scheduler.shutdown(wait=False)
        self.stopper.finish()  # leaves from here if a poll is stuck
        self._release()
        self.runner.close()
        log.info("daemon_stopped")
        return 0

    def _count_retry(self, source: str, cause: str) -> None:
        self.metrics.retries.labels(source, cause).inc()

    def _release(self) -> None:
        """What a stop gives back, whether or not it waits for stuck polls."""
        self._unhook()
        self._unhook = _nothing
        self.waker.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
            self.metrics_server = None
        self.runner.locks.release_all()
        release_run_lock(self.run_lock)
        self.run_lock = None

    # -- scheduling ---------------------------------------------------------

    def _schedule_all(self) -> None:
        for name in self.config.sources:
            self._schedule_source(name)
        self.scheduler.add_job(
            self.publish,
            "interval",
            seconds=PUBLISH_INTERVAL,
            id="publisher",
            name="publisher",
            executor="control",
        )
        self._schedule_coordinator()
        interval = self.notifier.watchdog_interval
        if interval:
            self.scheduler.add_job(
                self.heartbeat,
                "interval",
                seconds=interval,
                id="heartbeat",
                name="heartbeat",
                next_run_time=_now(),
                executor="control",
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

    def _poll_soon(self, name: str) -> None:
        """A source just taken over is polled within seconds, not an interval later."""
        job = self.scheduler.get_job(f"source:{name}")
        settings = self.config.sources.get(name)
        due = getattr(job, "next_run_time", None)
        if job is None or settings is None or due is None:
            return
        soon = _now() + dt.timedelta(
            seconds=self.rng.uniform(0, min(settings.interval / 10, MAX_START_JITTER))
        )
        if due > soon:
            job.modify(next_run_time=soon)

    def _schedule_coordinator(self) -> None:
        if not isinstance(self.locks, SharedLocks):
            self.metrics.held.set(len(self.config.sources))  # SQLite: the only process
            self.metrics.members.set(1)
            return
        period = coordination_interval(s.interval for s in self.config.sources.values())
        self.scheduler.add_job(
            self.coordinate,
            "interval",
            seconds=period,
            id="coordinator",
            name="coordinator",
            executor="control",
            replace_existing=True,
        )
        if period > SETTLE_STEP:
            # Daemons started together each see only those registered before
            # them: the first takes every source. Rounds every SETTLE_STEP for
            # one period let it hand the others their share within seconds,
            # not a period later.
            self.scheduler.add_job(
                self.coordinate,
                "interval",
                seconds=SETTLE_STEP,
                end_date=_now() + dt.timedelta(seconds=period),
                id="coordinator-settle",
                name="coordinator (settling)",
                executor="control",
                replace_existing=True,
            )

    def coordinate(self) -> None:
        """Rebalance this daemon's share of the sources with the others'."""
        if self.stop.is_set() or not isinstance(self.locks, SharedLocks):
            return
        moved = self.locks.rebalance(list(self.config.sources))
        self._handed(moved)
        self.waker.from_mirror(self.config)

    def _holds(self, name: str) -> bool:
        """Whether this process polls ``name`` now (on SQLite it polls them all)."""
        return not isinstance(self.locks, SharedLocks) or name in self.locks.held

    def _handed(self, moved: Handover) -> None:
        for name in moved.released + moved.lost:
            self.runner.handed_over(name)
        for name in moved.claimed:
            self._poll_soon(name)
        m = self.metrics
        m.held.set(len(self.locks.held) if isinstance(self.locks, SharedLocks) else 0)
        m.members.set(moved.members)
        for direction, names in (
            ("acquired", moved.claimed),
            ("released", moved.released),
            ("lost", moved.lost),
        ):
            if names:
                m.handovers.labels(direction).inc(len(names))
        if moved.claimed or moved.released or moved.lost:
            log.info(
                "sources_rebalanced",
                held=moved.held,
                daemons=moved.members,
                acquired=len(moved.claimed),
                released=len(moved.released),
                lost=len(moved.lost),
            )

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
        self.rules = new.compiled_rules
        for name in set(old.sources) - set(new.sources):
            self.scheduler.remove_job(f"source:{name}")
            self.runner.forget(name)
            self.waker.forget(name)
        for name, settings in new.sources.items():
            if old.sources.get(name) != settings:
                self._schedule_source(name)
        self.health.track(set(new.sources))
        self._schedule_coordinator()  # the sources, and so its pace, may have changed
        try:
            self.waker.listen(new)
        except FatalError as exc:  # an address taken: the other webhooks and the polls go on
            log.error("webhooks_not_listening", error=str(exc))
        if set(new.sources) - set(old.sources) and new.mirror.auto_migrate:
            from edsync.mirror import views
            from edsync.sources import source_records

            # A source added by the reload gets its views now, as at a start.
            views.ensure(self.engine, source_records(new.sources), strict=False)
        log.info("config_reloaded", sources=list(new.sources))
        self.notifier.ready(self.summary())
        return True

    # -- jobs ---------------------------------------------------------------

    def poll(self, name: str, ticket: float | None = None) -> None:
        """A source's poll job: the interval's, or a webhook's (``ticket``)."""
        settings = self.config.sources.get(name)
        if self.stop.is_set() or settings is None or not self.waker.start(name, ticket):
            return
        held_for = None
        try:
            outcome = self.runner.poll(settings, self.rules)
            if outcome.error is not None:
                held_for = self._back_off(name, outcome, settings.interval)
        finally:
            self.waker.finish(name, held_for)

    def _back_off(self, name: str, outcome: PollOutcome, interval: float) -> float | None:
        """Hold the next poll off when the failure asks for more than the
        interval; the seconds it is held off, if so."""
        assert outcome.error is not None
        delay = next_delay(outcome.error, interval, outcome.failures)
        if delay <= interval or self.stop.is_set():
            return None
        job = self.scheduler.get_job(f"source:{name}")
        if job is not None:
            job.modify(next_run_time=_now() + dt.timedelta(seconds=delay))
        return delay

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
            except MirrorError as exc:
                log.error("publisher_failed", error=str(exc))
        try:
            counts = outbox.counts(self.engine)
        except MirrorError as exc:
            log.error("publisher_failed", error=str(exc))
            return
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


def _nothing() -> None:
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
