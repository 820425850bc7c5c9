"""Read-only summaries of the mirror for ``status``, ``quarantine`` and the demo."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from edsync.mirror.sql import adapt, loads
from edsync.mirror.timestamps import instant

_QUARANTINED = """
SELECT source, event_id, position, type, reason, applied_at, payload
FROM events WHERE status = 'quarantined' AND source = ?
ORDER BY position
"""


@dataclass(frozen=True, slots=True)
class SourceProgress:
    """A source's checkpoint row, as ``status`` reports it."""

    source: str
    cursor: str | None
    events_total: int
    last_success_at: dt.datetime | None
    consecutive_failures: int
    last_error: str | None
    gap: str | None
    lag: int | None
    snapshot: str | None
    """The snapshot-progress JSON text while a snapshot is under way."""
    webhook_at: dt.datetime | None = None
    """When the source's last authorized webhook arrived."""


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    """A quarantined event's ledger row, as ``quarantine list`` shows it."""

    source: str
    event_id: str
    position: int
    type: str
    reason: str | None
    received_at: dt.datetime
    """When the ledger received it (``applied_at``)."""
    payload: Any


def progress(engine: Engine) -> dict[str, SourceProgress]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source, cursor, events_total, last_success_at, consecutive_failures, "
            "last_error, gap, lag, snapshot, webhook_at FROM checkpoints"
        ).all()
    return {
        row[0]: SourceProgress(
            row[0],
            row[1],
            int(row[2]),
            instant(row[3]),
            int(row[4]),
            row[5],
            row[6],
            None if row[7] is None else int(row[7]),
            row[8],
            instant(row[9]),
        )
        for row in rows
    }


def events_by_status(engine: Engine, status: str) -> dict[str, int]:
    """Ledger rows in ``status``, per source."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(conn, "SELECT source, COUNT(*) FROM events WHERE status = ? GROUP BY source"),
            (status,),
        ).all()
    return {source: int(n) for source, n in rows}


def records_by_source(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT source, COUNT(*) FROM records GROUP BY source").all()
    return {source: int(n) for source, n in rows}


def quarantined(engine: Engine, source: str) -> list[QuarantinedRow]:
    """A source's quarantined events, in position order."""
    found = []
    with engine.connect() as conn:
        for row in conn.exec_driver_sql(adapt(conn, _QUARANTINED), (source,)):
            received = instant(row[5])
            assert received is not None  # applied_at is NOT NULL
            found.append(
                QuarantinedRow(
                    row[0], row[1], int(row[2]), row[3], row[4], received, loads(row[6], conn)
                )
            )
    return found


def records_by_entity(engine: Engine) -> list[tuple[str, str, int, int]]:
    """(source, entity, records, deleted), ordered by source and entity."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source, entity, COUNT(*), SUM(CASE WHEN deleted THEN 1 ELSE 0 END) "
            "FROM records GROUP BY source, entity ORDER BY source, entity"
        ).all()
    return [(source, entity, int(n), int(deleted or 0)) for source, entity, n, deleted in rows]


def ledger_by_status(engine: Engine) -> list[tuple[str, str, int]]:
    """(source, status, events), ordered by source and status."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source, status, COUNT(*) FROM events GROUP BY source, status "
            "ORDER BY source, status"
        ).all()
    return [(source, status, int(n)) for source, status, n in rows]


def with_status(engine: Engine, source: str, entity: str, status: str) -> int:
    """How many of ``source``'s ``entity`` records have the status ``status``
    (SQLite's json_extract: the demo's mirror)."""
    with engine.connect() as conn:
        count = conn.exec_driver_sql(
            adapt(
                conn,
                "SELECT COUNT(*) FROM records WHERE source = ? AND entity = ? "
                "AND json_extract(data, '$.status') = ?",
            ),
            (source, entity, status),
        ).scalar_one()
    return int(count)


def refresh_queued(engine: Engine) -> dict[str, int]:
    """Resources waiting to be read again (SPEC 2.1), per source."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT source, COUNT(*) FROM refresh_queue GROUP BY source"
        ).all()
    return {source: int(n) for source, n in rows}


_FORGET_REQUESTED = """
SELECT e.source, COUNT(DISTINCT e.person_id) FROM events e
WHERE e.op = 'forgotten' AND e.person_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM records r
    WHERE r.source = e.source AND r.entity_id = e.person_id AND r.person_id = e.person_id
      AND r.deleted = ?
)
GROUP BY e.source
"""


def forget_requested(engine: Engine) -> dict[str, int]:
    """People who asked to be forgotten and whom upstream has not deleted yet:
    requests an administrator reviews (SPEC 5.4), per source."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(adapt(conn, _FORGET_REQUESTED), (True,)).all()
    return {source: int(n) for source, n in rows}
