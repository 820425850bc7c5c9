"""The refresh queue (SPEC 2.1): the resources a page's events named, written
in the page's transaction, and read back by the refresh, oldest first."""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from edsync.mirror.sql import Into, adapt, execute, insert_rows
from edsync.mirror.timestamps import event_time
from edsync.model import Change, Queued, Ref

Pending = dict[tuple[str, str], tuple[int, str | None, str | None]]
"""A page's queue before it is written: (entity, id) → (position, person, time)
of the newest event that named it."""


def add(pending: Pending, change: Change) -> None:
    """What ``change`` names, at its position unless a later event named it."""
    for ref in change.refresh:
        key = (ref.entity, ref.id)
        known = pending.get(key)
        person = ref.person_id or (known[1] if known else None)
        if known is not None and known[0] >= change.position:
            pending[key] = (known[0], person, known[2])
        else:
            pending[key] = (change.position, person, change.occurred_at)


def write(conn: Connection, source: str, pending: Pending, now: str) -> None:
    rows = [
        (source, entity, entity_id, position, person_id, changed_at, now)
        for (entity, entity_id), (position, person_id, changed_at) in pending.items()
    ]
    insert_rows(conn, _QUEUE_ROW, rows, _ON_QUEUED)


_QUERY = """
SELECT entity, entity_id, position, person_id, changed_at FROM refresh_queue
WHERE source = ? ORDER BY position, entity, entity_id LIMIT ?
"""


def oldest(engine: Engine, source: str, limit: int) -> list[Queued]:
    """The oldest ``limit`` queued resources, each with the newest event that named it."""
    with engine.connect() as conn:
        rows = execute(conn, adapt(conn, _QUERY), (source, limit))
    return [
        Queued(Ref(entity, entity_id, person), int(position), event_time(changed))
        for entity, entity_id, position, person, changed in rows
    ]


_QUEUE_ROW = Into(
    "refresh_queue",
    ("source", "entity", "entity_id", "position", "person_id", "changed_at", "queued_at"),
)

# Queued again before its read: once, at the newest position that named it.
_ON_QUEUED = """
ON CONFLICT (source, entity, entity_id) DO UPDATE SET
    position = CASE WHEN excluded.position > refresh_queue.position
               THEN excluded.position ELSE refresh_queue.position END,
    changed_at = CASE WHEN excluded.position > refresh_queue.position
                 THEN excluded.changed_at ELSE refresh_queue.changed_at END,
    person_id = COALESCE(excluded.person_id, refresh_queue.person_id)
"""
