"""The locks edsync takes in the database.

SQLite: a write transaction takes the file's write lock when it begins
(``WRITE``). PostgreSQL: an advisory lock per source, held for the session by
its poller (``edsync.run.locks``), and one per transaction while migrating.
"""

from __future__ import annotations

from sqlalchemy import Connection

WRITE = "edsync_write"
"""Execution option: on SQLite, take the write lock when the transaction begins."""

MIGRATION_LOCK = 0x65647379_6E63_0001  # "edsync" + 1: the advisory lock migrations take

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


def lock_migrations(conn: Connection) -> None:
    """Several daemons may start at once on a new database: one migrates, the
    others wait here (PostgreSQL) and then find the schema current."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
