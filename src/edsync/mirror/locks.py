"""The locks edsync takes in the database.

SQLite: a write transaction takes the file's write lock when it begins
(``WRITE``). PostgreSQL: an advisory lock per source, all of a daemon's held
on its one coordination ``Session`` (``edsync.run.sharing`` decides which), and
one per transaction while migrating. Daemons know of each other by that
session's ``application_name`` (``MEMBER_SUFFIX``): a killed process's session
ends, and with it its locks and its membership, with no expiry to wait for.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Collection

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from edsync.mirror.errors import MirrorError

WRITE = "edsync_write"
"""Execution option: on SQLite, take the write lock when the transaction begins."""

MIGRATION_LOCK = 0x65647379_6E63_0001  # "edsync" + 1: the advisory lock migrations take

_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
    "AND pid = pg_backend_pid() AND granted "
    "AND ((classid::bigint << 32) | objid::bigint) = %s"
)


# Every connection of a process is named "edsync <pid>@<host>"; a daemon's
# coordination session adds " run", which is how daemons count each other.
MEMBER_SUFFIX = " run"
_PREFIX = "edsync "


def session_name() -> str:
    """What PostgreSQL shows for this process's connections (``pg_stat_activity``)."""
    return f"{_PREFIX}{os.getpid()}@{socket.gethostname()}"[:63]


def member_name() -> str:
    """This daemon's coordination session: its membership among the daemons."""
    return session_name() + MEMBER_SUFFIX


def member_of(session: str) -> tuple[str, int] | None:
    """``member_name``'s (host, pid), or None for another session's name."""
    if not session.startswith(_PREFIX) or not session.endswith(MEMBER_SUFFIX):
        return None
    pid, _, host = session[len(_PREFIX) : -len(MEMBER_SUFFIX)].partition("@")
    return (host, int(pid)) if pid.isdigit() else None


_KEY = "((l.classid::bigint << 32) | l.objid::bigint)"
_ADVISORY = (
    "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def name_session(conn: Connection, name: str) -> None:
    conn.exec_driver_sql("SELECT set_config('application_name', %s, false)", (name[:63],))


def members(conn: Connection) -> int:
    """Daemons alive on this database (their coordination sessions), this one included."""
    count = conn.exec_driver_sql(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE %s",
        ("edsync %" + MEMBER_SUFFIX,),
    ).scalar()
    return int(count or 0)


def taken(conn: Connection) -> dict[int, bool]:
    """Every advisory lock held on this database: key → held by this session."""
    rows = conn.exec_driver_sql(
        f"SELECT {_KEY}, l.pid = pg_backend_pid() FROM pg_locks l WHERE {_ADVISORY}"
    ).all()
    return {int(key): bool(mine) for key, mine in rows}


def holders(engine: Engine) -> dict[int, str]:
    """Every advisory lock held on this database: key → the holder's session name."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT {_KEY}, a.application_name FROM pg_locks l "
            f"JOIN pg_stat_activity a ON a.pid = l.pid WHERE {_ADVISORY}"
        ).all()
    return {int(key): str(name or "") for key, name in rows}


def shared(engine: Engine) -> bool:
    """Whether processes share the mirror's sources by these locks (PostgreSQL);
    SQLite has one writer."""
    return engine.dialect.name == "postgresql"


class Session:
    """A daemon's coordination session: one connection, named for its
    membership (``MEMBER_SUFFIX``), holding every source lock the daemon has.

    Each method is one transaction, committed, so the session never idles in
    one. A failure is a ``MirrorError``; the caller then ``drop``s the session
    (and with it, on the server, every lock it held) and opens another later.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, engine: Engine, name: str) -> Session:
        conn = engine.connect()
        try:
            name_session(conn, name)
            conn.commit()
        except MirrorError:
            _discard(conn)
            raise
        return cls(conn)

    def holds(self, key: int) -> bool:
        """Whether this session still holds ``key``, asked of the server."""
        mine = held(self._conn, key)
        self._conn.commit()
        return mine

    def survey(self) -> tuple[dict[int, bool], int]:
        """Every advisory lock on the database (key → held by this session),
        and the daemons alive on it (``members``)."""
        found = taken(self._conn), members(self._conn)
        self._conn.commit()
        return found

    def exchange(self, release: Collection[int], claim: Collection[int]) -> set[int]:
        """Hand back ``release``, then take what of ``claim`` no other session
        has; the keys taken."""
        unlock_many(self._conn, release)
        got = try_lock_many(self._conn, claim)
        self._conn.commit()
        return got

    def drop(self) -> None:
        """The session failed: its connection is never handed out again."""
        _discard(self._conn)

    def close(self) -> None:
        """Closing the session releases its advisory locks."""
        self._conn.close()


def _discard(conn: Connection) -> None:
    with contextlib.suppress(MirrorError, SQLAlchemyError):
        conn.invalidate()
    conn.close()


def try_lock_many(conn: Connection, keys: Collection[int]) -> set[int]:
    """Take each session lock of ``keys`` that no other session has; those taken."""
    if not keys:
        return set()
    rows = conn.exec_driver_sql(
        "SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", (list(keys),)
    ).all()
    return {int(key) for (key,) in rows}


def unlock_many(conn: Connection, keys: Collection[int]) -> None:
    if keys:
        conn.exec_driver_sql(
            "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", (list(keys),)
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
