"""The outbox's queries: the signals and deliveries a page raises, which
deliveries are due, and how each attempt ends.

The publisher decides (backoff, budgets, sinks); these functions only read and
write the ``signals`` and ``deliveries`` rows, so the statements live beside
the schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from edsync.mirror.sql import Into, adapt, insert_rows, loads, placeholders
from edsync.mirror.timestamps import event_time, instant, stamp
from edsync.model import Signal

if TYPE_CHECKING:
    from edsync.model import Change
    from edsync.rules import Rule

_DUE = """
SELECT d.signal_id, d.sink, d.attempts, s.rule, s.source, s.event_id, s.entity, s.entity_id,
       s.occurred_at, s.data, d.failing_since, s.created_at
FROM deliveries d JOIN signals s ON s.id = d.signal_id
WHERE d.status = 'pending' AND (? OR d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)
ORDER BY s.created_at, s.occurred_at, s.id
LIMIT ?
"""

_UPDATE = """
UPDATE deliveries SET status = ?, attempts = ?, last_error = COALESCE(?, last_error),
                      next_attempt_at = ?, delivered_at = ?, failing_since = ?
WHERE signal_id = ? AND sink = ?
"""

_RETRY_FAILED = """
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, failing_since = NULL
WHERE status = 'failed'
"""


@dataclass(frozen=True, slots=True)
class Due:
    """A pending delivery of one signal to one sink."""

    signal: Signal
    sink: str
    attempts: int
    failing_since: dt.datetime | None
    """When the current run of failed attempts began; None until an attempt fails."""
    created_at: dt.datetime | None = None
    """When the signal was raised."""


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """A person's record as the publisher reads a member from it."""

    data: dict[str, Any]
    deleted: bool


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """How an attempt left its delivery."""

    status: str
    attempts: int
    error: str | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    failing_since: dt.datetime | None


def due(engine: Engine, *, everything: bool, now: dt.datetime, limit: int) -> list[Due]:
    """Pending deliveries due at ``now`` (or all pending ones), oldest signal first."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(adapt(conn, _DUE), (everything, stamp(now), limit))
        return [
            Due(
                Signal(
                    row[0],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    row[7],
                    event_time(row[8]),
                    loads(row[9], conn),
                ),
                sink=row[1],
                attempts=int(row[2]),
                failing_since=instant(row[10]),
                created_at=instant(row[11]),
            )
            for row in rows
        ]


_CHUNK = 500  # ids per IN list


def person_records(
    engine: Engine, source: str, entity: str, ids: Iterable[str]
) -> dict[str, PersonRecord]:
    """The records of ``entity`` with these ids in ``source``, by id (absent: not
    in the mirror): where the members of waiting signals are read."""
    wanted = sorted(set(ids))
    found: dict[str, PersonRecord] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            statement = (
                "SELECT entity_id, data, deleted FROM records "
                f"WHERE source = ? AND entity = ? AND entity_id IN ({placeholders(len(chunk))})"
            )
            for entity_id, data, deleted in conn.exec_driver_sql(
                adapt(conn, statement), (source, entity, *chunk)
            ):
                value = loads(data, conn)
                found[entity_id] = PersonRecord(
                    value if isinstance(value, dict) else {}, bool(deleted)
                )
    return found


def record(engine: Engine, signal_id: str, sink: str, outcome: DeliveryUpdate) -> None:
    values = (
        outcome.status,
        outcome.attempts,
        outcome.error,
        _stamp(outcome.next_attempt_at),
        _stamp(outcome.delivered_at),
        _stamp(outcome.failing_since),
        signal_id,
        sink,
    )
    with engine.begin() as conn:
        conn.exec_driver_sql(adapt(conn, _UPDATE), values)


def _stamp(when: dt.datetime | None) -> str | None:
    return None if when is None else stamp(when)


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        count = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
        ).scalar_one()
    return int(count)


def earliest_due(engine: Engine) -> dt.datetime | None:
    """The earliest ``next_attempt_at`` of a pending delivery, or None."""
    with engine.connect() as conn:
        return instant(
            conn.exec_driver_sql(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'"
            ).scalar()
        )


def retry_failed(engine: Engine, now: dt.datetime) -> int:
    """Failed deliveries become pending, due at ``now``; how many did."""
    with engine.begin() as conn:
        result = conn.exec_driver_sql(adapt(conn, _RETRY_FAILED), (stamp(now),))
    return max(result.rowcount, 0)


def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Deliveries per (sink, status): what ``status`` shows and the gauges export."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT sink, status, COUNT(*) FROM deliveries GROUP BY sink, status"
        ).all()
    return {(sink, status): int(n) for sink, status, n in rows}


def last_error(engine: Engine, sink: str) -> str | None:
    """Why the sink's latest undelivered delivery is not delivered: a pending
    one first (what the sink fails on now), else the latest failed one."""
    with engine.connect() as conn:
        error = conn.exec_driver_sql(adapt(conn, _LAST_ERROR), (sink,)).scalar()
    return None if error is None else str(error)


_LAST_ERROR = (
    "SELECT last_error FROM deliveries "
    "WHERE sink = ? AND status <> 'delivered' AND last_error IS NOT NULL "
    "ORDER BY CASE status WHEN 'pending' THEN 0 ELSE 1 END, "
    "COALESCE(next_attempt_at, failing_since) DESC LIMIT 1"
)


_INSERT_SIGNAL = Into(
    "signals",
    (
        "id",
        "rule",
        "source",
        "event_id",
        "entity",
        "entity_id",
        "occurred_at",
        "data",
        "person_id",
        "created_at",
    ),
)


_SIGNAL_ONCE = "ON CONFLICT (rule, source, event_id) DO NOTHING"


_INSERT_DELIVERY = Into(
    "deliveries", ("signal_id", "sink", "status", "attempts", "next_attempt_at")
)


_DELIVERY_ONCE = "ON CONFLICT (signal_id, sink) DO NOTHING"


def insert_signals(
    conn: Connection, signal_rows: list[tuple[Any, ...]], delivery_rows: list[tuple[Any, ...]]
) -> None:
    """A page's signals and their deliveries, in the page's transaction (SPEC 3);
    a signal raised again (a replayed page) is left as it is."""
    insert_rows(conn, _INSERT_SIGNAL, signal_rows, _SIGNAL_ONCE)
    insert_rows(conn, _INSERT_DELIVERY, delivery_rows, _DELIVERY_ONCE)


def signal_data(
    rule: Rule, source: str, change: Change, *, person_entity: str | None
) -> dict[str, Any]:
    """The outbox row's data: what a sink needs. A member read from the person's
    record (the rule's ``member`` starts at ``person_entity``) is read when the
    signal is delivered, from where ``member_from`` says (``"member"`` is null
    until then); any other member is taken from the change now."""
    data = dict(change.data or {})
    if change.status is not None:
        data["status"] = change.status
    ref = rule.member_ref(change, person_entity)
    member: dict[str, Any] = (
        {"member": rule.member_of(change)}
        if ref is None
        else {"member": None, "member_from": ref.to_json()}
    )
    return {
        "rule": rule.name,
        "event_type": rule.event_type,
        **member,
        "change": {
            "source": source,
            "event_id": change.event_id,
            "position": change.position,
            "type": change.type,
            "entity": change.entity,
            "entity_id": change.entity_id,
            "op": change.op,
            "occurred_at": change.occurred_at,
            "data": data,
        },
    }
