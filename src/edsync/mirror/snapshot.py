"""Writing a snapshot into the mirror: each page of current objects upserted
at the snapshot's position, then what the snapshot lacked marked deleted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import Connection

from edsync.mirror import checkpoints
from edsync.mirror.erasure import purge
from edsync.mirror.ledger import RECORD_ROW, Ledger
from edsync.mirror.maintenance import NUL_ESCAPE, NUL_REASON, nul_repair
from edsync.mirror.sql import Into, adapt, dumps, execute, insert_rows
from edsync.model import Cursor, Ref, SnapshotObject, SnapshotPage
from edsync.normalize import advance

log = structlog.get_logger("edsync.mirror")

SNAPSHOT_EVENT = "snapshot"  # last_event_id of a record a snapshot wrote


BATCH = 1000
"""Objects of a page turned into rows and written at a time: their JSON (data
and typed columns, and on PostgreSQL the rows' JSON array) exists for one batch
only, so a feed's largest page (10 000 objects) does not hold it all at
once (issue 32)."""


def apply_snapshot(
    ledger: Ledger, page: SnapshotPage, progress: checkpoints.SnapshotProgress
) -> int:
    """Upsert one page of current objects as of the snapshot's cursor position,
    with the snapshot's progress, in one transaction. Purged objects become
    tombstones (a forgotten person's data is erased)."""
    now = checkpoints.now_iso()
    with ledger.transaction() as conn:
        for start in range(0, len(page.objects), BATCH):
            batch = [
                _nul_free(ledger.source, page.entity, obj)
                for obj in page.objects[start : start + BATCH]
            ]
            if page.deleted:
                for obj, _ in batch:
                    ref = Ref(page.entity, obj.entity_id, obj.person_id)
                    forgotten = bool(obj.data.get("forgotten"))
                    purge(conn, ledger, ref, forgotten=forgotten, keep=ledger.outlives_person)
                _keep_snapshot_id(conn, ledger.source, page.entity, batch, progress.id)
            else:
                rows = _rows(ledger, page.entity, batch, progress, now)
                insert_rows(conn, _INSERT_SNAPSHOT, rows, _ON_SNAPSHOT_CONFLICT)
            del batch  # before the next batch is built
        checkpoints.write_snapshot(conn, ledger.source, progress)
    return 0 if page.deleted else len(page.objects)


def _rows(
    ledger: Ledger,
    entity: str,
    batch: Sequence[tuple[SnapshotObject, str]],
    progress: checkpoints.SnapshotProgress,
    now: str,
) -> list[tuple[Any, ...]]:
    """The ``records`` rows of current objects, at the snapshot's cursor position."""
    version = progress.cursor.position
    return [
        (
            ledger.source,
            entity,
            obj.entity_id,
            data,
            ledger.typed(entity, obj.data),
            False,
            version,
            SNAPSHOT_EVENT,
            obj.person_id,
            now,
            _updated(obj.data),
            now,
            progress.id,
            obj.parent_id,
        )
        for obj, data in batch
    ]


def _nul_free(source: str, entity: str, obj: SnapshotObject) -> tuple[SnapshotObject, str]:
    """``obj`` and its data's JSON, with U+FFFD for U+0000 in every string.

    PostgreSQL cannot store U+0000, and a snapshot object has no quarantine:
    failing the page would stop the source for good, and leaving the object
    out would mark its record deleted when the snapshot ends. So it is kept
    with the one character PostgreSQL refuses replaced, on every backend
    alike, and a warning names it.
    """
    data = dumps(obj.data)
    fields = (obj.entity_id, obj.person_id)
    if NUL_ESCAPE not in data and not any(f is not None and "\x00" in f for f in fields):
        return obj, data  # the common case: one substring test
    repair = nul_repair(obj.data, fields)
    if repair is None:
        return obj, data
    repaired, (entity_id, person_id) = repair
    log.warning(
        "snapshot_object_repaired",
        source=source,
        entity=entity,
        entity_id=entity_id,
        reason=NUL_REASON,
    )
    return SnapshotObject(entity_id, repaired, person_id), dumps(repaired)


def finish_snapshot(
    ledger: Ledger, entities: Sequence[str], snapshot_id: str, cursor: Cursor
) -> int:
    """Mark deleted what the snapshot lacked and resume at ``cursor``, atomically."""
    now = checkpoints.now_iso()
    missing = 0
    with ledger.transaction() as conn:
        current = checkpoints.read(conn, ledger.source)
        cursor = advance(current.cursor if current else None, cursor)
        for entity in entities:
            missing += _mark_missing(conn, ledger.source, entity, snapshot_id, now)
        checkpoints.write_resume(conn, ledger.source, cursor, now)
    return missing


MARK_WINDOW = 5000
"""Records of one entity a mark-missing statement looks at, by key.

One ``UPDATE`` over a whole entity made SQLite keep the prior version of
every page it changed in its statement journal, in memory (``temp_store =
MEMORY``): a resync marking 100 000 of 1 000 000 records deleted peaked 70 MB
above the snapshot's pages (issue 32). In key windows, the journal of each
statement is bounded, and the entity is still read once."""


def _mark_missing(conn: Connection, source: str, entity: str, snapshot_id: str, now: str) -> int:
    """Mark deleted the live records of ``entity`` the snapshot did not write, a
    window of ``MARK_WINDOW`` keys at a time (all in the caller's transaction)."""
    missing, after = 0, None
    while True:
        first = after is None
        ((upto,),) = execute(
            conn,
            adapt(conn, _WINDOW_FIRST if first else _WINDOW_NEXT),
            (source, entity, MARK_WINDOW) if first else (source, entity, after, MARK_WINDOW),
        )
        if upto is None:
            return missing
        result = conn.exec_driver_sql(
            adapt(conn, _MARK_FIRST if first else _MARK_NEXT),
            (True, now, source, entity, *(() if first else (after,)), upto, False, snapshot_id),
        )
        missing += max(result.rowcount, 0)
        after = upto


def _updated(data: dict[str, Any]) -> str | None:
    value = data.get("updated_date")
    return value if isinstance(value, str) else None


_INSERT_SNAPSHOT = Into("records", (*RECORD_ROW, "snapshot_id", "parent_id"))


def _keep_snapshot_id(
    conn: Connection,
    source: str,
    entity: str,
    objects: Sequence[tuple[SnapshotObject, str]],
    snapshot_id: str,
) -> None:
    """A purged record is the snapshot's too: it is not "missing" at its end."""
    params = [(snapshot_id, source, entity, obj.entity_id) for obj, _ in objects]
    if params:
        execute(
            conn,
            adapt(
                conn,
                "UPDATE records SET snapshot_id = ? WHERE source = ? AND entity = ? "
                "AND entity_id = ?",
            ),
            params,
            many=True,
        )


_ON_SNAPSHOT_CONFLICT = """
ON CONFLICT (source, entity, entity_id) DO UPDATE SET
    data = excluded.data,
    typed = excluded.typed,
    deleted = excluded.deleted,
    version = excluded.version,
    last_event_id = excluded.last_event_id,
    person_id = excluded.person_id,
    changed_at = excluded.changed_at,
    synced_at = excluded.synced_at,
    snapshot_id = excluded.snapshot_id,
    parent_id = excluded.parent_id
WHERE records.version <= excluded.version
"""


# The last key of the next window: the MARK_WINDOW-th key after ``after``, or
# the entity's last one (NULL when no key is left).
_WINDOW = """
SELECT max(entity_id) FROM (
    SELECT entity_id FROM records WHERE source = ? AND entity = ? {after}
    ORDER BY entity_id LIMIT ?
) AS window_keys
"""
_WINDOW_FIRST = _WINDOW.format(after="")
_WINDOW_NEXT = _WINDOW.format(after="AND entity_id > ?")

_MARK = """
UPDATE records SET deleted = ?, synced_at = ?
WHERE source = ? AND entity = ? {after} AND entity_id <= ?
  AND deleted = ? AND (snapshot_id IS NULL OR snapshot_id <> ?)
"""
_MARK_FIRST = _MARK.format(after="")
_MARK_NEXT = _MARK.format(after="AND entity_id > ?")
