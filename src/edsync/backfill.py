"""The burst mode: drain the selected sources until caught up, then return."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine

from edsync import sources
from edsync.config import Config
from edsync.errors import EdsyncError
from edsync.mirror import checkpoints
from edsync.publisher import Publisher, Report, burst_budget
from edsync.rules import compile_rules
from edsync.sources.base import Bounds
from edsync.sync import DrainResult, Progress, drain

log = structlog.get_logger("edsync.backfill")


@dataclass(slots=True)
class Outcome:
    results: list[DrainResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    deliveries: Report | None = None

    @property
    def undelivered(self) -> int:
        if self.deliveries is None:
            return 0
        return self.deliveries.pending + self.deliveries.failed

    @property
    def ok(self) -> bool:
        return not self.failures and not self.undelivered


def run_backfill(
    config: Config,
    engine: Engine,
    names: Sequence[str],
    *,
    bounds: Bounds | None = None,
    reset: bool = False,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    gate: threading.Lock | None = None,
    deliver: bool = True,
) -> Outcome:
    """Drain each source in turn (one's failure does not stop the others), then
    deliver the signals raised, retrying for the sinks' ``retry_for`` (at most
    ``publisher.BURST_WAIT``; what is still pending stays in the outbox)."""
    outcome = Outcome()
    rules = compile_rules(config)
    for name in names:
        settings = config.sources[name]
        if reset:
            checkpoints.reset(engine, name)
            log.info("cursor_reset", source=name)
        source = sources.create(settings)
        try:
            result = drain(
                engine,
                source,
                bounds=bounds,
                on_invalid=settings.on_invalid,
                progress=progress,
                stop=stop,
                gate=gate,
                rules=rules,
            )
        except EdsyncError as exc:
            outcome.failures[name] = str(exc)
            checkpoints.record_failure(engine, name, str(exc))
            log.error("source_failed", source=name, error=str(exc), kind=type(exc).__name__)
        else:
            outcome.results.append(result)
            log.info(
                "source_drained",
                source=name,
                pages=result.pages,
                applied=result.applied,
                stale=result.stale,
                quarantined=result.quarantined,
                duplicates=result.duplicates,
                cursor=result.cursor.value if result.cursor else None,
                us_per_event=result.stages.per_event(result.received),
            )
        finally:
            source.close()
        if stop is not None and stop.is_set():
            break
    if deliver and config.sinks and not (stop is not None and stop.is_set()):
        outcome.deliveries = deliver_outbox(config, engine, stop)
    return outcome


def deliver_outbox(config: Config, engine: Engine, stop: threading.Event | None) -> Report:
    publisher = Publisher(engine, config)
    try:
        report = publisher.drain(burst_budget(config), stop)
    finally:
        publisher.close()
    log.info(
        "deliveries_done",
        delivered=report.delivered,
        retried=report.retried,
        failed=report.failed,
        pending=report.pending,
    )
    return report
