"""``edsync quarantine list|retry``: the events that could not be normalized."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Engine

from edsync import sources
from edsync.config import Config
from edsync.errors import InvalidEventError
from edsync.mirror.apply import Applier
from edsync.mirror.sql import adapt, loads
from edsync.normalize import RawEvent
from edsync.rules import compile_rules

log = structlog.get_logger("edsync.quarantine")

_LIST = """
SELECT source, event_id, position, type, reason, applied_at, payload
FROM events WHERE status = 'quarantined' AND source = ?
ORDER BY position
"""


@dataclass(frozen=True, slots=True)
class Quarantined:
    source: str
    event_id: str
    position: int
    type: str
    reason: str | None
    received_at: str
    payload: Any


@dataclass(slots=True)
class RetryReport:
    applied: int = 0
    stale: int = 0
    still_quarantined: int = 0


def list_quarantined(engine: Engine, names: Sequence[str]) -> list[Quarantined]:
    out = []
    with engine.connect() as conn:
        for name in names:
            for row in conn.exec_driver_sql(adapt(conn, _LIST), (name,)):
                received = row[5].isoformat() if hasattr(row[5], "isoformat") else row[5]
                out.append(
                    Quarantined(
                        row[0], row[1], int(row[2]), row[3], row[4], received, loads(row[6], conn)
                    )
                )
    return out


def retry(config: Config, engine: Engine, names: Sequence[str]) -> RetryReport:
    """Normalize each quarantined event again; apply those that now pass, in position order."""
    report = RetryReport()
    rules = compile_rules(config)
    by_source: dict[str, list[Quarantined]] = {}
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
                result = Applier(engine, name, source.person_entity, rules).reapply(changes)
                report.applied += result.applied
                report.stale += result.stale
        finally:
            source.close()
    return report
