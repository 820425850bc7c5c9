"""Hand-written SQL for the hot path, run on the DBAPI cursor under SQLAlchemy.

Statements are written once with ``?`` placeholders and adapted to the
driver's paramstyle (psycopg wants ``%s``); both SQLite and PostgreSQL speak
the same ``ON CONFLICT`` dialect.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection


@lru_cache(maxsize=256)
def _convert(statement: str, paramstyle: str) -> str:
    if paramstyle in ("format", "pyformat"):
        return statement.replace("%", "%%").replace("?", "%s")
    return statement


def adapt(conn: Connection, statement: str) -> str:
    return _convert(statement, conn.dialect.paramstyle)


def placeholders(count: int) -> str:
    return ",".join("?" * count)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(value: Any, conn: Connection) -> Any:
    """A JSON column's value: SQLite stores the text, psycopg hands back JSONB
    already parsed (a JSON string included, so a ``str`` alone proves nothing)."""
    if conn.dialect.name == "sqlite" and isinstance(value, str | bytes):
        return orjson.loads(value)
    return value
