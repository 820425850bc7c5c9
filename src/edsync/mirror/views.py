"""Typed views over ``records``: one per entity of each configured source.

``{source}_{entities}`` (``dreamapply_offers``, ``edlink_people``) has ``id``,
``deleted``, the entity's documented fields as columns (``sources/fields.py``
declares them), ``version``, ``changed_at``, ``synced_at`` and ``data``.
Views depend on the configuration (the source names), which migrations do
not know: ``db upgrade`` and the auto-migrating ``ensure_schema`` create or
replace them for the configured sources after migrating.

The only dialect-specific SQL is ``_Dialect``: how a JSON field is read and
cast. On SQLite a column holds the value as the JSON has it (SQLite types
values, not columns). On PostgreSQL a value not of the documented type reads
as NULL rather than failing the query: its casts raise, so each is guarded,
cheaply. A second read of the same path costs next to nothing there (the
costs are the casts and string functions); each guard with a path read once
that was measured costs more: a LATERAL subquery (a node a row), a jsonpath
filter, a plpgsql or not-inlined SQL function, a regular expression
(bench/README.md). An integer column holds the integers that fit a bigint (a
fraction or a larger number reads as NULL). A string shaped like an ISO date
but not one (a month 13, MySQL's zero date) still makes the cast raise: the
vendors format their dates from date types (PHP writes a zero date as
"-0001-11-30…", which the shape refuses).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from edsync.sources.fields import KINDS, Field, FieldType

MAX_NAME = 63
"""PostgreSQL truncates longer identifiers: such a view is skipped, not cut."""

_DIGITS = "'0123456789'"
_BIGINT = (-(2**63), 2**63 - 1)


@dataclass(frozen=True, slots=True)
class View:
    name: str
    source: str
    kind: str
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
    """How each field type reads out of ``data``: the one place SQL differs."""

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

    def _path(self, path: Sequence[str]) -> str:
        keys = "".join(f".{key}" if key.isidentifier() else f'."{key}"' for key in path)
        return _literal(f"${keys}")

    def value(self, path: Sequence[str]) -> str:
        return f"json_extract(data, {self._path(path)})"

    def field(self, field: Field) -> str:
        value = self.value(field.path)
        if field.type != "link":
            # SQLite types values, not columns: the value as the JSON has it, so
            # a query on a column costs one read of the document, as by hand.
            return value
        return self.link(field.path, field.prefix, cast="CAST({} AS TEXT)")

    def link(self, path: Sequence[str], prefix: str = "", cast: str = "{}") -> str:
        """A link's id: the trailing digits of a link string, else an expanded
        object's id; a link of the field's common form (``prefix``) first."""
        general = self._any_link(path, cast)
        if not prefix:
            return general
        return f"CASE WHEN {self._plain_link(path, prefix)} ELSE {general} END"

    def _any_link(self, path: Sequence[str], cast: str) -> str:
        """The trailing digits of a string (read first: the journal's common
        case; string functions, as a regular expression costs several times a
        JSON read), else an object's id."""
        value = self.value(path)
        tail = f"NULLIF(replace({value}, rtrim({value}, {_DIGITS}), ''), '')"
        return f"COALESCE({cast.format(tail)}, {cast.format(self.value((*path, 'id')))})"

    def _plain_link(self, path: Sequence[str], prefix: str) -> str:
        """``WHEN … THEN …`` reading a value that is ``prefix`` and digits (and
        only such a value) as the general expression would, its digits, with
        fewer calls: one trim and no replace."""
        value = self.value(path)
        return (
            f"rtrim({value}, {_DIGITS}) = {_literal(prefix)} "
            f"THEN NULLIF(substr({value}, {len(prefix) + 1}), '')"
        )


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

    def _json(self, path: Sequence[str]) -> str:
        return "data" + "".join(f"->{_literal(key)}" for key in path)

    def value(self, path: Sequence[str]) -> str:
        *head, last = path
        return f"{self._json(head)}->>{_literal(last)}"

    def field(self, field: Field) -> str:
        value, json = self.value(field.path), self._json(field.path)
        if field.type == "text":
            return value
        # PostgreSQL casts raise on bad input, failing the whole query: each is
        # guarded, with tests cheaper than the cast (no regular expressions).
        if field.type == "integer":
            # A number written without a point (jsonb writes no exponents) of up
            # to 18 characters always fits; a longer one is compared first.
            return (
                f"CASE WHEN jsonb_typeof({json}) = 'number' AND ({value}) NOT LIKE '%.%' "
                f"THEN CASE WHEN octet_length({value}) < 19 OR ({value})::numeric "
                f"BETWEEN {_BIGINT[0]} AND {_BIGINT[1]} THEN ({value})::bigint END END"
            )
        if field.type == "boolean":
            return f"CASE WHEN jsonb_typeof({json}) = 'boolean' THEN ({json})::boolean END"
        if field.type == "timestamp":
            # An ISO date's shape: one LIKE, the cheapest test measured.
            return f"CASE WHEN {value} LIKE '____-__-__%' THEN ({value})::timestamptz END"
        return self.link(field.path, field.prefix)


def _dialect(name: str) -> _Dialect:
    return _Postgres() if name == "postgresql" else _Dialect()


def _column(dialect: _Dialect, field: Field) -> str:
    expression = "person_id" if field.type == "person" else dialect.field(field)
    return f"{expression} AS {_quote(field.column)}"


def _view(dialect: _Dialect, name: str, source: str, kind: str, entity: str) -> View:
    _, fields = KINDS[kind][entity]
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
        f"SELECT {', '.join([*head, *(_column(dialect, f) for f in fields), *tail])} "
        f"FROM records WHERE source = {_literal(source)} AND entity = {_literal(entity)}"
    )
    return View(name, source, kind, entity, tuple(columns), select)


def plan(sources: Mapping[str, str], dialect: str) -> tuple[list[View], list[Skipped]]:
    """The views for ``sources`` (name → kind), and those that cannot be made."""
    sql = _dialect(dialect)
    views: list[View] = []
    skipped: list[Skipped] = []
    taken: dict[str, str] = {}
    for source, kind in sorted(sources.items()):
        for entity, (plural, _) in KINDS.get(kind, {}).items():
            name = view_name(source, plural)
            if len(name.encode()) > MAX_NAME:
                skipped.append(Skipped(source, entity, f"{name} is over {MAX_NAME} bytes"))
            elif name in taken:
                skipped.append(Skipped(source, entity, f"{name} is taken by {taken[name]}"))
            else:
                taken[name] = f"source {source!r}"
                views.append(_view(sql, name, source, kind, entity))
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
    # psycopg reads `%` as a placeholder (a LIKE pattern has some): doubled.
    if conn.dialect.paramstyle in ("format", "pyformat"):
        statement = statement.replace("%", "%%")
    conn.exec_driver_sql(statement)


def refresh(conn: Connection, sources: Mapping[str, str]) -> list[str]:
    """Create or replace the views of ``sources`` in ``conn``'s (write)
    transaction; returns the names of those it (re)created."""
    views, skipped = plan(sources, conn.dialect.name)
    for item in skipped:
        _log().warning("view_skipped", source=item.source, entity=item.entity, why=item.reason)
    changed = stale(conn, views)
    for view in changed:
        _replace(conn, view)
    return [view.name for view in changed]


def ensure(engine: Engine, sources: Mapping[str, str], *, strict: bool = True) -> list[str]:
    """Bring the views of ``sources`` up to date; a read, and no lock, when
    they are. Not ``strict``: a database error is logged, not raised."""
    from sqlalchemy.exc import DBAPIError

    from edsync.mirror.locks import WRITE, lock_migrations

    views, _ = plan(sources, engine.dialect.name)
    try:
        with engine.connect() as conn:
            if not stale(conn, views):
                return []
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            lock_migrations(conn)
            return refresh(conn, sources)
    except DBAPIError as exc:
        if strict:
            raise
        _log().warning("views_not_refreshed", error=str(exc.orig))
        return []


def _log() -> Any:
    import structlog

    return structlog.get_logger("edsync.mirror")


def present(engine: Engine, views: Sequence[View]) -> set[str]:
    """The names among ``views`` that exist and are current."""
    with engine.connect() as conn:
        outdated = {view.name for view in stale(conn, views)}
    return {view.name for view in views} - outdated
