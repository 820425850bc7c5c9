"""The refresh queue (SPEC 2.1): resources a page's events named, read again,
and what their reads write into ``records``.

A page's transaction queues what its events name (``ledger``); the drain
reads each queued resource and hands the results here, where the records,
the children that left their parent, the deletions and the queue rows taken
commit together: a crash between two reads loses no refresh, and a resource
named by many events is read once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection

from edsync.mirror import checkpoints
from edsync.mirror.erasure import PURGE_EVENT, purge
from edsync.mirror.ledger import RECORD_ROW, Ledger
from edsync.mirror.sql import Into, adapt, dumps, execute, insert_rows, placeholders
from edsync.mirror.timestamps import event_time
from edsync.model import Queued, Ref, Refreshed, SnapshotObject

REFRESH_EVENT = "refresh"  # last_event_id of a record a refresh wrote


def write_refreshed(
    ledger: Ledger, results: Sequence[tuple[Refreshed, Queued]], keep: Sequence[str] = ()
) -> int:
    """Write what the reads found, in one transaction; returns the records written.

    A resource read whole writes its record and its children's; a child of a
    kind read in full that is no longer there is marked deleted. A resource
    upstream no longer has is purged (``erasure.purge``; ``keep``: kinds that
    outlive a person's erasure, scrubbed). The queue rows are taken unless an
    event queued the resource again since.
    """
    now = checkpoints.now_iso()
    with ledger.transaction() as conn:
        rows, written = [], 0
        forget = _forget_requests(conn, ledger.source, results)
        for result, queue in results:
            if result.gone:
                purge(
                    conn,
                    ledger,
                    result.ref,
                    forgotten=result.forgotten,
                    keep=keep,
                    changed_at=queue.changed_at,
                    version=queue.position,
                )
                continue
            rows += [
                _row(ledger, e, obj, queue, now=now, forget=forget) for e, obj in result.records
            ]
            written += len(result.records)
        _upsert(conn, rows)
        for result, _ in results:
            if not result.gone and result.complete:
                _mark_left(conn, ledger.source, result, now)
        _dequeue(conn, ledger.source, results)
    return written


def _upsert(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """The refreshed records. On SQLite one row a step: a refresh batch's row
    count varies, and a multi-row statement per count would fill the driver's
    statement cache with large statements (measured: 96 → 144 MB peak)."""
    if conn.dialect.name != "sqlite":
        insert_rows(conn, _INSERT_REFRESHED, rows, _ON_REFRESHED)
    elif rows:
        statement = f"{_INSERT_REFRESHED.head} VALUES ({placeholders(len(RECORD_ROW) + 1)}) "
        execute(conn, adapt(conn, statement + _ON_REFRESHED), rows, many=True)


def write_purges(ledger: Ledger, gone: Sequence[Refreshed], keep: Sequence[str] = ()) -> int:
    """One page of upstream's purges; a record already purged is left as it is
    (the list holds every purge, and is read again every ``purge_interval``)."""
    with ledger.transaction() as conn:
        done = _purged_already(conn, ledger.source, [g.ref for g in gone])
        fresh = [g for g in gone if (g.ref.entity, g.ref.id) not in done]
        for item in fresh:
            purge(conn, ledger, item.ref, forgotten=item.forgotten, keep=keep)
    return len(fresh)


def _row(
    ledger: Ledger,
    entity: str,
    obj: SnapshotObject,
    queue: Queued,
    *,
    now: str,
    forget: dict[str, str],
) -> tuple[Any, ...]:
    data = obj.data
    if entity == ledger.person_entity and obj.entity_id in forget:
        # A request an administrator reviews: shown, nothing erased (SPEC 5.4).
        data = {**data, "forget_requested": forget[obj.entity_id]}
    return (
        ledger.source,
        entity,
        obj.entity_id,
        dumps(data),
        ledger.typed(entity, data),
        False,
        queue.position,
        REFRESH_EVENT,
        obj.person_id,
        now,
        queue.changed_at,
        now,
        obj.parent_id,
    )


def _forget_requests(
    conn: Connection, source: str, results: Sequence[tuple[Refreshed, Queued]]
) -> dict[str, str]:
    """The people among ``results`` whose ledger holds a request to be forgotten."""
    people = sorted(
        {
            obj.person_id
            for result, _ in results
            for _, obj in result.records
            if obj.person_id is not None
        }
    )
    found: dict[str, str] = {}
    for start in range(0, len(people), 500):
        chunk = people[start : start + 500]
        rows = execute(
            conn,
            adapt(
                conn,
                "SELECT person_id, MAX(occurred_at) FROM events WHERE source = ? "
                f"AND op = 'forgotten' AND person_id IN ({placeholders(len(chunk))}) "
                "GROUP BY person_id",
            ),
            (source, *chunk),
        )
        for person, when in rows:
            found[str(person)] = str(event_time(when))
    return found


def _mark_left(conn: Connection, source: str, result: Refreshed, now: str) -> None:
    """Children of the kinds read in full that are no longer in the collection."""
    present = {(entity, obj.entity_id) for entity, obj in result.records}
    kinds = result.complete
    rows = execute(
        conn,
        adapt(
            conn,
            "SELECT entity, entity_id FROM records WHERE source = ? AND parent_id = ? "
            f"AND entity IN ({placeholders(len(kinds))}) AND deleted = ?",
        ),
        (source, result.ref.id, *kinds, False),
    )
    left = [(True, now, source, e, i) for e, i in rows if (e, i) not in present]
    if left:
        execute(conn, adapt(conn, _MARK_DELETED), left, many=True)


def _dequeue(conn: Connection, source: str, results: Iterable[tuple[Refreshed, Queued]]) -> None:
    params = [(source, r.ref.entity, r.ref.id, q.position) for r, q in results]
    if params:
        execute(conn, adapt(conn, _DEQUEUE), params, many=True)


def _purged_already(conn: Connection, source: str, refs: Sequence[Ref]) -> set[tuple[str, str]]:
    done: set[tuple[str, str]] = set()
    for start in range(0, len(refs), 500):
        chunk = refs[start : start + 500]
        keys = " OR ".join("(entity = ? AND entity_id = ?)" for _ in chunk)
        rows = execute(
            conn,
            adapt(
                conn,
                f"SELECT entity, entity_id FROM records WHERE source = ? AND deleted = ? "
                f"AND last_event_id = ? AND ({keys})",
            ),
            (source, True, PURGE_EVENT, *(v for ref in chunk for v in (ref.entity, ref.id))),
        )
        done.update((str(e), str(i)) for e, i in rows)
    return done


_INSERT_REFRESHED = Into("records", (*RECORD_ROW, "parent_id"))

# A read is the resource's state now: it wins over what events or a snapshot
# wrote before; the version only moves forward.
_ON_REFRESHED = """
ON CONFLICT (source, entity, entity_id) DO UPDATE SET
    data = excluded.data,
    typed = excluded.typed,
    deleted = excluded.deleted,
    version = CASE WHEN records.version > excluded.version
              THEN records.version ELSE excluded.version END,
    last_event_id = excluded.last_event_id,
    person_id = COALESCE(excluded.person_id, records.person_id),
    parent_id = COALESCE(excluded.parent_id, records.parent_id),
    changed_at = excluded.changed_at,
    synced_at = excluded.synced_at
"""

_MARK_DELETED = """
UPDATE records SET deleted = ?, synced_at = ? WHERE source = ? AND entity = ? AND entity_id = ?
"""

_DEQUEUE = """
DELETE FROM refresh_queue WHERE source = ? AND entity = ? AND entity_id = ? AND position <= ?
"""
