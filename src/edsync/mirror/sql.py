"""Hand-written SQL for the hot path, run on the DBAPI cursor under SQLAlchemy.

Statements are written once with ``?`` placeholders and adapted to the
driver's paramstyle (psycopg wants ``%s``); both SQLite and PostgreSQL speak
the same ``ON CONFLICT`` dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Dialect, String
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from edsync.mirror.errors import MirrorError, translate
from edsync.model import RawJson, dump_json, parse_json


@lru_cache(maxsize=256)
def _convert(statement: str, paramstyle: str) -> str:
    if paramstyle in ("format", "pyformat"):
        return statement.replace("%", "%%").replace("?", "%s")
    return statement


def adapt(conn: Connection, statement: str) -> str:
    return _convert(statement, conn.dialect.paramstyle)


def placeholders(count: int) -> str:
    return ",".join("?" * count)


def execute(
    conn: Connection, statement: str, params: Sequence[Any], *, many: bool = False
) -> list[tuple[Any, ...]]:
    """Run ``statement`` (already adapted) on the DBAPI cursor under ``conn``
    and return its rows (none for a write).

    This skips SQLAlchemy's per-statement work (an execution context, a result
    object, a pass over every parameter): a backfill's apply measured 14 %
    faster without it. It is still ``conn``'s transaction, and driver errors
    come out as every other statement's do (``MirrorError``).
    A write must run inside a transaction SQLAlchemy began (``engine.begin()``):
    the raw cursor does not begin one by itself.
    """
    cursor = conn.connection.cursor()
    try:
        if many:
            cursor.executemany(statement, params)
            return []
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description is not None else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _wrapped(conn, exc, statement, params, cursor, many=many) from exc
    finally:
        cursor.close()


def _wrapped(
    conn: Connection,
    exc: Any,  # the driver's Error, whose class SQLAlchemy types per dialect
    statement: str,
    params: Sequence[Any],
    cursor: Any,
    *,
    many: bool,
) -> MirrorError:
    """The driver's error as the engine's ``handle_error`` hook would raise it
    (``errors.on_error``); a lost connection is invalidated so the pool does
    not hand it out again."""
    lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    error = DBAPIError.instance(
        statement,
        params,
        exc,
        conn.dialect.loaded_dbapi.Error,
        hide_parameters=conn.engine.hide_parameters,
        connection_invalidated=lost,
        dialect=conn.dialect,
        ismulti=many,
    )
    # Typed to allow a DontWrapMixin too, which only applies to non-driver errors.
    assert isinstance(error, DBAPIError)
    return translate(error, disconnected=lost)


MAX_PARAMETERS = 30_000
"""Bound parameters per multi-row statement: under SQLite's limit of 32 766."""


@dataclass(frozen=True, slots=True)
class Into:
    """Where a batched insert goes: a table, and the columns each row fills, in order."""

    table: str
    columns: tuple[str, ...]

    @property
    def head(self) -> str:
        return f"INSERT INTO {self.table} ({', '.join(self.columns)})"


@lru_cache(maxsize=64)
def _values_statement(into: Into, tail: str, rows: int, paramstyle: str) -> str:
    group = f"({placeholders(len(into.columns))})"
    return _convert(f"{into.head} VALUES {','.join([group] * rows)} {tail}", paramstyle)


@lru_cache(maxsize=64)
def _json_rows_statement(into: Into, tail: str, dialect: Dialect) -> str:
    from edsync.mirror.schema import metadata

    table = metadata.tables[into.table]
    values = ", ".join(
        f"(row->>{index})::{_cast(table.c[name].type, dialect)}"
        for index, name in enumerate(into.columns)
    )
    return _convert(
        f"{into.head} SELECT {values} FROM jsonb_array_elements(?::jsonb) "
        f"WITH ORDINALITY AS page(row, n) ORDER BY n {tail}",
        dialect.paramstyle,
    )


def _cast(column_type: TypeEngine[Any], dialect: Dialect) -> str:
    # Text, never VARCHAR(n): a cast to VARCHAR(n) truncates silently, where
    # storing into the column refuses a value too long, as executemany did.
    if isinstance(column_type, String):
        return "text"
    return str(column_type.compile(dialect=dialect))


def insert_rows(
    conn: Connection, into: Into, rows: Sequence[tuple[Any, ...]], tail: str = ""
) -> None:
    """Insert ``rows`` into ``into`` (then ``tail``, e.g. ``ON CONFLICT``) in a
    few statements, however many rows.

    On SQLite, multi-row ``VALUES`` statements: one step into the database
    (and one release of the GIL) where ``executemany`` takes one per row. On
    PostgreSQL, one statement with one parameter: the rows as a JSON array
    (orjson writes it in C), cast column by column on the server. psycopg's
    ``executemany`` binds, sends and reads back each row in Python, and its
    array parameters escape every string in Python: both cost several times
    the client CPU per row. The rows must not conflict with each other: an
    upsert may touch a key only once.
    """
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        statement = _json_rows_statement(into, tail, conn.dialect)
        execute(conn, statement, (orjson.dumps(rows).decode(),))
        return
    step = max(1, MAX_PARAMETERS // len(into.columns))
    paramstyle = conn.dialect.paramstyle
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        statement = _values_statement(into, tail, len(chunk), paramstyle)
        execute(conn, statement, [value for row in chunk for value in row])


def dumps(value: Any) -> str:
    if type(value) is RawJson:
        return value.text  # as the feed sent it
    return dump_json(value)


def loads(value: Any, conn: Connection) -> Any:
    """A JSON column's value: SQLite stores the text, psycopg hands back JSONB
    already parsed (a JSON string included, so a ``str`` alone proves nothing)."""
    if conn.dialect.name == "sqlite" and isinstance(value, str | bytes):
        return parse_json(value)
    return value


def select_rows(
    conn: Connection, table: str, columns: str | Sequence[str], where: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """``SELECT columns FROM table WHERE where``, JSON columns (``name:json``) parsed.

    On SQLite the rows come back as one JSON array built inside the database:
    one step of the statement instead of one per row, so a thread fetching the
    next page is not handed the GIL (and made to give it back) on every row.
    """
    names = (columns,) if isinstance(columns, str) else tuple(columns)
    if conn.dialect.name != "sqlite":
        plain = ", ".join(name.removesuffix(":json") for name in names)
        return execute(conn, adapt(conn, f"SELECT {plain} FROM {table} WHERE {where}"), params)
    items = ", ".join(
        f"json({name.removesuffix(':json')})" if name.endswith(":json") else name for name in names
    )
    ((packed,),) = execute(
        conn, f"SELECT json_group_array(json_array({items})) FROM {table} WHERE {where}", params
    )
    return [tuple(row) for row in parse_json(packed or "[]")]
