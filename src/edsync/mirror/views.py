"""Typed views over ``records``: one per entity of each configured source.

``{source}_{entities}`` (``dreamapply_offers``, ``edlink_people``) has ``id``,
``deleted``, the entity's documented fields as columns, ``version``,
``changed_at``, ``synced_at`` and ``data``. The fields are the kind's
(``Records.entities``), handed in by whoever opens the mirror, source by
source: the mirror imports no source module.
Views depend on the configuration (the source names), which migrations do
not know: ``db upgrade`` and the auto-migrating ``ensure_schema`` create or
replace them for the configured sources after migrating.

A view reads no JSON of ``data``: each column's value is in ``typed``,
which the apply step writes beside ``data`` (the kind's ``Records`` read
them, once per record written), already of its column's type: a link's id,
an integer that fits a bigint, a date PostgreSQL reads. So a query on a
view costs less than the same question asked of ``data`` (bench/views.py),
and a malformed value reads as NULL on both engines instead of failing a
PostgreSQL cast. The only dialect-specific SQL is ``_Dialect``: how a value
is read out of ``typed``.

A view that is created or replaced has its records' values computed again
(``retype``): the records written before the column existed (migration
0009), or before a field was declared.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from edsync.kinds import TYPED_FORMAT, Example, Field, FieldType, Kind, Records
from edsync.mirror.errors import MirrorError
from edsync.mirror.sql import adapt, execute, loads

MAX_NAME = 63
"""PostgreSQL truncates longer identifiers: such a view is skipped, not cut."""

RETYPE_BATCH = 2000


@dataclass(frozen=True, slots=True)
class View:
    name: str
    source: str
    records: Records
    entity: str
    columns: tuple[tuple[str, str], ...]  # (column, SQL type as the dialect shows it)
    select: str  # the SELECT the view is


@dataclass(frozen=True, slots=True)
class Skipped:
    source: str
    entity: str
    reason: str


def view_name(source: str, plural: str) -> str:
    """A plain lower-case identifier: ``Da-Main`` → ``da_main_offers``."""
    return re.sub(r"[^a-z0-9_]", "_", f"{source}_{plural}".lower())


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _Dialect:
    """How a column reads its value out of ``typed``: the one place SQL differs."""

    types: Mapping[FieldType, str] = {
        "text": "TEXT",
        "integer": "INTEGER",
        "boolean": "BOOLEAN",
        "timestamp": "TEXT",
        "link": "TEXT",
        "person": "TEXT",
    }
    record_types: Mapping[str, str] = {
        "id": "TEXT",
        "deleted": "BOOLEAN",
        "version": "INTEGER",
        "changed_at": "TEXT",
        "synced_at": "TEXT",
        "data": "JSON",
    }

    def field(self, field: Field) -> str:
        # The values are already of their type (``kinds.typed_values``).
        return f"json_extract(typed, '$.{field.column}')"


class _Postgres(_Dialect):
    types: Mapping[FieldType, str] = {
        "text": "text",
        "integer": "bigint",
        "boolean": "boolean",
        "timestamp": "timestamp with time zone",
        "link": "text",
        "person": "text",
    }
    record_types: Mapping[str, str] = {
        "id": "text",
        "deleted": "boolean",
        "version": "bigint",
        "changed_at": "timestamp with time zone",
        "synced_at": "timestamp with time zone",
        "data": "jsonb",
    }
    # Each cast reads a value that kinds.typed_values wrote for it: it
    # cannot fail, so no guard is needed.
    casts: Mapping[FieldType, str] = {
        "integer": "::bigint",
        "boolean": "::boolean",
        "timestamp": "::timestamptz",
    }

    def field(self, field: Field) -> str:
        value = f"typed->>{_literal(field.column)}"
        cast = self.casts.get(field.type)
        return f"({value}){cast}" if cast else value


def _dialect(name: str) -> _Dialect:
    return _Postgres() if name == "postgresql" else _Dialect()


def _column(dialect: _Dialect, field: Field) -> str:
    expression = "person_id" if field.type == "person" else dialect.field(field)
    return f"{expression} AS {_quote(field.column)}"


def _view(dialect: _Dialect, name: str, source: str, records: Records, entity: str) -> View:
    _, fields = records.entities[entity]
    types = dialect.record_types
    head = [f"entity_id AS {_quote('id')}", "deleted"]
    tail = ["version", "changed_at", "synced_at", "data"]
    columns = [
        ("id", types["id"]),
        ("deleted", types["deleted"]),
        *((f.column, dialect.types[f.type]) for f in fields),
        *((c, types[c]) for c in tail),
    ]
    select = (
        f"SELECT /* typed values, format {TYPED_FORMAT} */ "
        f"{', '.join([*head, *(_column(dialect, f) for f in fields), *tail])} "
        f"FROM records WHERE source = {_literal(source)} AND entity = {_literal(entity)}"
    )
    return View(name, source, records, entity, tuple(columns), select)


def plan(sources: Mapping[str, Records], dialect: str) -> tuple[list[View], list[Skipped]]:
    """The views for ``sources`` (name → its kind's records), and those that
    cannot be made."""
    sql = _dialect(dialect)
    views: list[View] = []
    skipped: list[Skipped] = []
    taken: dict[str, str] = {}
    for source, records in sorted(sources.items()):
        for entity, (plural, _) in records.entities.items():
            name = view_name(source, plural)
            if len(name.encode()) > MAX_NAME:
                skipped.append(Skipped(source, entity, f"{name} is over {MAX_NAME} bytes"))
            elif name in taken:
                skipped.append(Skipped(source, entity, f"{name} is taken by {taken[name]}"))
            else:
                taken[name] = f"source {source!r}"
                views.append(_view(sql, name, source, records, entity))
    return views, skipped


def _fingerprint(view: View) -> str:
    digest = hashlib.sha256(view.select.encode()).hexdigest()[:16]
    return f"edsync view of {view.source}/{view.entity} ({digest})"


def _create(view: View) -> str:
    # SQLite keeps this text as the view's definition; PostgreSQL keeps a comment.
    return f"CREATE VIEW {_quote(view.name)} AS {view.select}"


def _existing(conn: Connection) -> dict[str, str]:
    """Each view's definition as the database keeps it (SQLite: the statement;
    PostgreSQL: the comment edsync put on it), by name."""
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT c.relname, coalesce(obj_description(c.oid, 'pg_class'), '') "
            "FROM pg_class c WHERE c.relkind = 'v' "
            "AND c.relnamespace = current_schema()::regnamespace"
        )
    else:
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    return {str(name): str(definition) for name, definition in rows}


def _wanted(view: View, dialect: str) -> str:
    return _fingerprint(view) if dialect == "postgresql" else _create(view)


def stale(conn: Connection, views: Sequence[View]) -> list[View]:
    """The views that are missing or not what this edsync would create."""
    existing = _existing(conn)
    dialect = conn.dialect.name
    return [v for v in views if existing.get(v.name) != _wanted(v, dialect)]


def _replace(conn: Connection, view: View) -> None:
    dialect = conn.dialect.name
    # Dropped, not CREATE OR REPLACE: PostgreSQL refuses that once a column
    # changes type or goes. A user's view built on ours makes the drop fail
    # (no CASCADE): theirs is never dropped behind their back.
    _ddl(conn, f"DROP VIEW IF EXISTS {_quote(view.name)}")
    _ddl(conn, _create(view))
    if dialect == "postgresql":
        _ddl(conn, f"COMMENT ON VIEW {_quote(view.name)} IS {_literal(_fingerprint(view))}")


def _ddl(conn: Connection, statement: str) -> None:
    # psycopg reads `%` as a placeholder (a source's name may hold one): doubled.
    if conn.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("%", "%%")
    conn.exec_driver_sql(statement)


def refresh(conn: Connection, sources: Mapping[str, Records]) -> list[str]:
    """Create or replace the views of ``sources`` in ``conn``'s (write)
    transaction; returns the names of those it (re)created."""
    views, skipped = plan(sources, conn.dialect.name)
    for item in skipped:
        _log().warning("view_skipped", source=item.source, entity=item.entity, why=item.reason)
    changed = stale(conn, views)
    for view in changed:
        _replace(conn, view)
        retype(conn, view.source, view.records, view.entity)
    return [view.name for view in changed]


_FIRST = "SELECT entity_id, data FROM records WHERE source = ? AND entity = ? "
_ORDER = "ORDER BY entity_id LIMIT ?"
_RETYPE = "UPDATE records SET typed = ? WHERE source = ? AND entity = ? AND entity_id = ?"


def retype(conn: Connection, source: str, records: Records, entity: str) -> int:
    """Compute the ``typed`` values of every record of ``source``'s ``entity``
    again, in ``conn``'s (write) transaction, a batch at a time in key order;
    returns how many."""
    typed = records
    first = adapt(conn, _FIRST + _ORDER)
    after = adapt(conn, _FIRST + "AND entity_id > ? " + _ORDER)
    update = adapt(conn, _RETYPE)
    rows = execute(conn, first, (source, entity, RETYPE_BATCH))
    done = 0
    while rows:
        params = [
            (typed(entity, _object(loads(data, conn))), source, entity, entity_id)
            for entity_id, data in rows
        ]
        execute(conn, update, params, many=True)
        done += len(rows)
        rows = execute(conn, after, (source, entity, rows[-1][0], RETYPE_BATCH))
    if done:
        _log().info("records_retyped", source=source, entity=entity, records=done)
    return done


def _object(data: Any) -> Mapping[str, Any]:
    return data if isinstance(data, dict) else {}


def ensure(engine: Engine, sources: Mapping[str, Records], *, strict: bool = True) -> list[str]:
    """Bring the views of ``sources`` up to date; a read, and no lock, when
    they are. Not ``strict``: a database error is logged, not raised."""
    from edsync.mirror.locks import WRITE, lock_migrations

    views, _ = plan(sources, engine.dialect.name)
    try:
        with engine.connect() as conn:
            if not stale(conn, views):
                return []
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            lock_migrations(conn)
            return refresh(conn, sources)
    except MirrorError as exc:
        if strict:
            raise
        _log().warning("views_not_refreshed", error=exc.said)
        return []


def _log() -> Any:
    import structlog

    return structlog.get_logger("edsync.mirror")


def present(engine: Engine, views: Sequence[View]) -> set[str]:
    """The names among ``views`` that exist and are current."""
    with engine.connect() as conn:
        outdated = {view.name for view in stale(conn, views)}
    return {view.name for view in views} - outdated


def example_sql(source: str, kind: Kind, example: Example) -> str:
    """The query ``example`` over ``source``'s views (of kind ``kind``), as
    ``edsync demo`` prints it for the user to try."""
    entities = kind.records.entities
    plural, fields = entities[example.entity]
    alias = plural[0]
    columns = [f"{alias}.{column}" for column in example.columns]
    tables = f"{view_name(source, plural)} {alias}"
    if example.person and kind.person_entity is not None:
        people, _ = entities[kind.person_entity]
        other = people[0] if people[0] != alias else "p"
        link = next(f.column for f in fields if f.type == "person")
        columns += [f"{other}.{column}" for column in example.person]
        tables += f" JOIN {view_name(source, people)} {other} ON {other}.id = {alias}.{link}"
    where = [f"{alias}.{column} = {_literal(value)}" for column, value in example.where]
    where.append(f"NOT {alias}.deleted")
    order = ", ".join(f"{alias}.{column}" for column in example.order)
    return (
        f"SELECT {', '.join(columns)} FROM {tables} WHERE {' AND '.join(where)}"
        f"{f' ORDER BY {order}' if order else ''} LIMIT {example.limit};"
    )
