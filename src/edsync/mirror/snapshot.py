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


def apply_snapshot(
    ledger: Ledger, page: SnapshotPage, progress: checkpoints.SnapshotProgress
) -> int:
    """Upsert one page of current objects as of the snapshot's cursor position,
    with the snapshot's progress, in one transaction. Purged objects become
    tombstones (a forgotten person's data is erased)."""
    now = checkpoints.now_iso()
    version = progress.cursor.position
    objects = [_nul_free(ledger.source, page.entity, obj) for obj in page.objects]
    rows = [
        (
            ledger.source,
            page.entity,
            obj.entity_id,
            data,
            ledger.typed(page.entity, obj.data),
            page.deleted,
            version,
            SNAPSHOT_EVENT,
            obj.person_id,
            now,
            _updated(obj.data),
            now,
            progress.id,
            obj.parent_id,
        )
        for obj, data in objects
    ]
    with ledger.transaction() as conn:
        if page.deleted:
            for obj, _ in objects:
                ref = Ref(page.entity, obj.entity_id, obj.person_id)
                forgotten = bool(obj.data.get("forgotten"))
                purge(conn, ledger, ref, forgotten=forgotten, keep=ledger.outlives_person)
            _keep_snapshot_id(conn, ledger.source, page.entity, objects, progress.id)
        else:
            insert_rows(conn, _INSERT_SNAPSHOT, rows, _ON_SNAPSHOT_CONFLICT)
        checkpoints.write_snapshot(conn, ledger.source, progress)
    return 0 if page.deleted else len(rows)


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
            result = conn.exec_driver_sql(
                adapt(conn, _MARK_MISSING), (True, now, ledger.source, entity, False, snapshot_id)
            )
            missing += max(result.rowcount, 0)
        checkpoints.write_resume(conn, ledger.source, cursor, now)
    return missing


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


_MARK_MISSING = """
UPDATE records SET deleted = ?, synced_at = ?
WHERE source = ? AND entity = ? AND deleted = ? AND (snapshot_id IS NULL OR snapshot_id <> ?)
"""
