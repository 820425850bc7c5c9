"""``edsync quarantine list|retry``: the events that could not be normalized."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from edsync import sources
from edsync.errors import InvalidEventError
from edsync.mirror import Mirror, reads
from edsync.mirror.apply import Applier
from edsync.mirror.reads import QuarantinedRow
from edsync.model import RawEvent
from edsync.settings import Config

log = structlog.get_logger("edsync.quarantine")


@dataclass(slots=True)
class RetryReport:
    applied: int = 0
    stale: int = 0
    still_quarantined: int = 0


def list_quarantined(engine: Mirror, names: Sequence[str]) -> list[QuarantinedRow]:
    return [item for name in names for item in reads.quarantined(engine, name)]


def retry(config: Config, engine: Mirror, names: Sequence[str]) -> RetryReport:
    """Normalize each quarantined event again; apply those that now pass, in position order."""
    report = RetryReport()
    rules = config.compiled_rules
    by_source: dict[str, list[QuarantinedRow]] = {}
    for item in list_quarantined(engine, names):
        by_source.setdefault(item.source, []).append(item)
    for name, items in by_source.items():
        source = sources.create(config.sources[name])
        try:
            changes = []
            for item in items:
                try:
                    changes.append(
                        source.normalize(RawEvent(item.event_id, item.position, item.payload))
                    )
                except InvalidEventError as exc:
                    report.still_quarantined += 1
                    log.info(
                        "still_quarantined", source=name, event_id=item.event_id, reason=str(exc)
                    )
            if changes:
                applier = Applier(
                    engine, name, source.person_entity, rules, records=sources.records(source.kind)
                )
                result = applier.reapply(changes)
                report.applied += result.applied
                report.stale += result.stale
        finally:
            source.close()
    return report
