"""A person's erasure (SPEC 5.4): scrubbing every ledger payload, signal and
record that names them, and what a forgotten person's record keeps."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection

from edsync.kinds import Records
from edsync.mirror import checkpoints
from edsync.mirror.sql import adapt, dumps, execute, loads, placeholders
from edsync.model import Ref


class Writer(Protocol):
    """What a purge needs of the source's writer (``mirror.ledger.Ledger``):
    ``typed``, its kind's records (their typed values, what an erasure keeps)."""

    source: str
    person_entity: str | None
    typed: Records


# What a forgotten person's signal keeps: which rule fired on which record,
# and the status the event named (it says nothing without a name).
SIGNAL_KEEP = (
    "status",
    "rule",
    "event_type",
    "source",
    "event_id",
    "entity",
    "entity_id",
    "op",
    "occurred_at",
    "position",
)


def scrubbed_record(data: dict[str, Any], *, is_person: bool, records: Records) -> dict[str, Any]:
    """A record of a forgotten person: ids and links only (what the kind's
    ``records`` keep). Records *about* them (offers, applications) keep their
    status, which says nothing without a name."""
    kept: dict[str, Any] = records.scrub(data, () if is_person else ("status",))
    return {**kept, "forgotten": True}


def erase_person(
    conn: Connection,
    source: str,
    person_entity: str | None,
    person_id: str,
    typed: Records,
) -> None:
    """Scrub every ledger payload, signal and record that names the person
    (SPEC 5.4), keeping what the kind's records (``typed``) keep; a record's
    ``typed`` values are read again from what is left."""
    who = {"source": source, "person_id": person_id}
    _rewrite_json(conn, "events", "payload", transform=lambda _k, v: (typed.scrub(v),), **who)
    _rewrite_json(
        conn, "signals", "data", transform=lambda _k, v: (typed.scrub(v, SIGNAL_KEEP),), **who
    )

    def record(key: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
        is_person = key[1] == person_entity
        kept = scrubbed_record(data, is_person=is_person, records=typed)
        return kept, typed(key[1], kept), is_person

    _rewrite_json(
        conn,
        "records",
        "data",
        transform=record,
        extra="typed = ?, deleted = (deleted OR ?)",
        **who,
    )


# The key columns each table is rewritten by, after the source.
_KEYS = {"events": ("id",), "signals": ("id",), "records": ("source", "entity", "entity_id")}


def _rewrite_json(
    conn: Connection,
    table: str,
    column: str,
    *,
    source: str,
    person_id: str,
    transform: Callable[[tuple[Any, ...], Any], tuple[Any, ...]],
    extra: str = "",
) -> None:
    """Read the person's rows of ``table`` and write back ``transform``'s result:
    the new JSON value, then any values ``extra`` SET clauses take."""
    _rewrite_where(
        conn,
        table,
        column,
        "source = ? AND person_id = ?",
        (source, person_id),
        transform=transform,
        extra=extra,
    )


PURGE_EVENT = "purge"  # last_event_id of a record a purge wrote


def purge(
    conn: Connection,
    ledger: Writer,
    ref: Ref,
    *,
    forgotten: bool = False,
    keep: Sequence[str] = (),
    changed_at: str | None = None,
    version: int = 0,
) -> None:
    """Upstream deleted ``ref`` (SPEC 5.4): its record, and every record reached
    through it, is marked deleted and scrubbed of personal data, keeping ids
    and the fact of the deletion; so is every ledger row and signal that names
    it. A person's erasure reaches every row of theirs; records of the kinds in
    ``keep`` (invoices: the platform keeps them) stay, scrubbed. ``changed_at``:
    when the deletion was seen (the event that led to the read), if known, and
    ``version`` its position. The tombstone holds the id and the fact of the
    deletion only, whatever the record held before: the same however the
    mirror got there (a run cut short, or a clean one)."""
    source, person_entity = ledger.source, ledger.person_entity
    now = checkpoints.now_iso()
    if ref.entity == person_entity:
        erase_person(conn, source, person_entity, ref.id, ledger.typed)
        execute(
            conn,
            adapt(
                conn,
                "UPDATE records SET deleted = ?, synced_at = ? WHERE source = ? AND person_id = ? "
                f"AND deleted = ?{_not_in(len(keep))}",
            ),
            (True, now, source, ref.id, False, *keep),
        )
    else:
        _scrub_named(conn, source, ref, ledger.typed, keep)
    _tombstone(
        conn, ledger, ref, forgotten=forgotten, now=now, changed_at=changed_at, version=version
    )


def _not_in(count: int) -> str:
    return f" AND entity NOT IN ({placeholders(count)})" if count else ""


def _tombstone(
    conn: Connection,
    ledger: Writer,
    ref: Ref,
    *,
    forgotten: bool,
    now: str,
    changed_at: str | None,
    version: int,
) -> None:
    own_id: int | str = int(ref.id) if ref.id.isascii() and ref.id.isdigit() else ref.id
    rows = execute(
        conn,
        adapt(conn, "SELECT data FROM records WHERE source = ? AND entity = ? AND entity_id = ?"),
        (ledger.source, ref.entity, ref.id),
    )
    if rows and not forgotten:
        # A 404 read after the purge list said "forgotten" does not unsay it.
        before = loads(rows[0][0], conn)
        forgotten = isinstance(before, dict) and before.get("forgotten") is True
    data = {"id": own_id, "purged": True, "forgotten": forgotten}
    row = (
        ledger.source,
        ref.entity,
        ref.id,
        dumps(data),
        ledger.typed(ref.entity, data),
        True,
        version,
        PURGE_EVENT,
        ref.person_id,
        now,
        changed_at,
        now,
    )
    execute(conn, adapt(conn, _TOMBSTONE), row)


_TOMBSTONE = """
INSERT INTO records (source, entity, entity_id, data, typed, deleted, version, last_event_id,
                     person_id, first_seen_at, changed_at, synced_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (source, entity, entity_id) DO UPDATE SET
    data = excluded.data,
    typed = excluded.typed,
    deleted = excluded.deleted,
    version = CASE WHEN records.version > excluded.version
              THEN records.version ELSE excluded.version END,
    last_event_id = excluded.last_event_id,
    person_id = COALESCE(records.person_id, excluded.person_id),
    changed_at = COALESCE(excluded.changed_at, records.changed_at),
    synced_at = excluded.synced_at
"""


def _scrub_named(
    conn: Connection,
    source: str,
    ref: Ref,
    typed: Records,
    keep: Sequence[str],
) -> None:
    """A resource that is not a person: its children's records, and the ledger
    rows and signals that link to it (``/{entity}s/{id}``), scrubbed. Children
    of the kinds in ``keep`` are resources upstream keeps: left as they are."""

    def child(key: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
        kept = scrubbed_record(data, is_person=False, records=typed)
        return kept, typed(key[1], kept), True

    _rewrite_where(
        conn,
        "records",
        "data",
        f"source = ? AND parent_id = ?{_not_in(len(keep))}",
        (source, ref.id, *keep),
        transform=child,
        extra="typed = ?, deleted = (deleted OR ?)",
    )
    person = _owner(conn, source, ref)
    if person is None:
        return
    link = re.compile(rf'/{re.escape(ref.entity)}s/{re.escape(ref.id)}(?:/|")')
    named = _rewrite_where(
        conn,
        "events",
        "payload",
        "source = ? AND person_id = ?",
        (source, person),
        transform=lambda _k, v: (typed.scrub(v),),
        only=lambda v: link.search(dumps(v)) is not None,
    )
    if named:
        marks = placeholders(len(named))
        ids = [key[0] for key in named]
        rows = execute(
            conn,
            adapt(
                conn,
                "SELECT s.id FROM signals s JOIN events e ON e.source = s.source AND "
                f"e.event_id = s.event_id WHERE e.id IN ({marks})",
            ),
            ids,
        )
        signal_ids = [row[0] for row in rows]
        if signal_ids:
            _rewrite_where(
                conn,
                "signals",
                "data",
                f"id IN ({placeholders(len(signal_ids))})",
                signal_ids,
                transform=lambda _k, v: (typed.scrub(v, SIGNAL_KEEP),),
            )


def _owner(conn: Connection, source: str, ref: Ref) -> str | None:
    if ref.person_id is not None:
        return ref.person_id
    rows = execute(
        conn,
        adapt(
            conn, "SELECT person_id FROM records WHERE source = ? AND entity = ? AND entity_id = ?"
        ),
        (source, ref.entity, ref.id),
    )
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def _rewrite_where(
    conn: Connection,
    table: str,
    column: str,
    where: str,
    params: Sequence[Any],
    *,
    transform: Callable[[tuple[Any, ...], Any], tuple[Any, ...]],
    extra: str = "",
    only: Callable[[Any], bool] | None = None,
) -> list[tuple[Any, ...]]:
    """``_rewrite_json`` for any ``where``; ``only`` picks the rows to rewrite.
    Returns the keys rewritten."""
    keys = _KEYS[table]
    rows = execute(
        conn,
        adapt(conn, f"SELECT {', '.join(keys)}, {column} FROM {table} WHERE {where}"),
        params,
    )
    sets = f"{column} = ?" + (f", {extra}" if extra else "")
    match = " AND ".join(f"{key} = ?" for key in keys)
    out, done = [], []
    for row in rows:
        key, value = tuple(row[:-1]), loads(row[-1], conn)
        if only is not None and not only(value):
            continue
        new, *more = transform(key, value)
        out.append((dumps(new), *more, *key))
        done.append(key)
    if out:
        execute(conn, adapt(conn, f"UPDATE {table} SET {sets} WHERE {match}"), out, many=True)
    return done
