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


def loads(value: Any) -> Any:
    """JSON columns come back as text from SQLite and parsed from psycopg."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value
