"""The burst mode: drain the selected sources until caught up, then return."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from edsync.mirror import Mirror
from edsync.model import Bounds
from edsync.publisher import Publisher, Report, burst_budget
from edsync.run.drain import DrainResult, Progress
from edsync.run.runner import Runner
from edsync.run.stopping import Stopper
from edsync.settings import Config

log = structlog.get_logger("edsync.backfill")


@dataclass(slots=True)
class BackfillReport:
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
    engine: Mirror,
    names: Sequence[str],
    *,
    bounds: Bounds | None = None,
    reset: bool = False,
    progress: Progress | None = None,
    stopper: Stopper | None = None,
    deliver: bool = True,
) -> BackfillReport:
    """Poll each source once, in burst, with the daemon's runner (one source's
    failure of any kind does not stop the others), then deliver the signals
    raised, retrying for the sinks' ``retry_for`` (at most
    ``publisher.BURST_WAIT``; what is still pending stays in the outbox).
    ``stopper``: the CLI's, whose signals stop it between pages."""
    outcome = BackfillReport()
    rules = config.compiled_rules
    stopper = stopper or Stopper()
    # No source locks: a backfill has always run beside anything (the
    # checkpoint row lock keeps two writers of one source in turn).
    runner = Runner(engine, stopper, burst=True)
    try:
        for name in names:
            polled = runner.poll(
                config.sources[name], rules, bounds=bounds, reset=reset, progress=progress
            )
            if polled.result is not None:
                outcome.results.append(polled.result)
            elif polled.message is not None:
                outcome.failures[name] = polled.message
            if stopper.stop.is_set():
                break
    finally:
        runner.close()
    if deliver and config.sinks and not stopper.stop.is_set():
        outcome.deliveries = deliver_outbox(config, engine, stopper.stop)
    return outcome


def deliver_outbox(config: Config, engine: Mirror, stop: threading.Event | None) -> Report:
    publisher = Publisher(engine, config)
    try:
        report = publisher.deliver(burst_budget(config), stop)
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
