"""A person's erasure (SPEC 5.4): scrubbing every ledger payload, signal and
record that names them, and what a forgotten person's record keeps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection

from edsync.mirror.sql import adapt, dumps, execute, loads
from edsync.normalize import scrub

# What a forgotten person's signal keeps: which rule fired on which record.
SIGNAL_KEEP = (
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


def scrubbed_record(data: dict[str, Any], *, is_person: bool) -> dict[str, Any]:
    """A record of a forgotten person: ids and links only. Records *about* them
    (offers, applications) keep their status, which says nothing without a name."""
    kept: dict[str, Any] = scrub(data, () if is_person else ("status",))
    return {**kept, "forgotten": True}


def erase_person(
    conn: Connection,
    source: str,
    person_entity: str | None,
    person_id: str,
    typed: Callable[[str, Mapping[str, Any]], str | None],
) -> None:
    """Scrub every ledger payload, signal and record that names the person
    (SPEC 5.4); a record's ``typed`` values are read again from what is left."""
    who = {"source": source, "person_id": person_id}
    _rewrite_json(conn, "events", "payload", transform=lambda _k, v: (scrub(v),), **who)
    _rewrite_json(conn, "signals", "data", transform=lambda _k, v: (scrub(v, SIGNAL_KEEP),), **who)

    def record(key: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
        is_person = key[1] == person_entity
        kept = scrubbed_record(data, is_person=is_person)
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
    keys = _KEYS[table]
    rows = execute(
        conn,
        adapt(
            conn,
            f"SELECT {', '.join(keys)}, {column} FROM {table} WHERE source = ? AND person_id = ?",
        ),
        (source, person_id),
    )
    if not rows:
        return
    sets = f"{column} = ?" + (f", {extra}" if extra else "")
    where = " AND ".join(f"{key} = ?" for key in keys)
    params = []
    for row in rows:
        key, value = tuple(row[:-1]), loads(row[-1], conn)
        new, *more = transform(key, value)
        params.append((dumps(new), *more, *key))
    execute(conn, adapt(conn, f"UPDATE {table} SET {sets} WHERE {where}"), params, many=True)
