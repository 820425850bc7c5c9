"""PostgreSQL session advisory locks: the statements ``coordination`` holds a source by."""

from __future__ import annotations

from sqlalchemy import Connection

_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() AND granted "
    "AND ((classid::bigint << 32) | objid::bigint) = %s"
)


def try_lock(conn: Connection, key: int) -> bool:
    """Take the session lock ``key`` unless another session has it."""
    return bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (key,)).scalar())


def held(conn: Connection, key: int) -> bool:
    """Whether this session still holds ``key``, asked of the server."""
    return bool(conn.exec_driver_sql(_HELD, (key,)).scalar())
