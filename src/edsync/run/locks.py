"""Which process polls which source (SPEC 8).

On PostgreSQL, a session advisory lock per source: the process that holds it
polls, the others stand by and try again each interval; when the holder dies
its session ends, the lock is released, and the next try takes over. The
holder checks the lock is still its own before every page it writes.

On SQLite there is one writer by design: a second ``edsync run`` on the same
file refuses to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import IO, Protocol

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from edsync.errors import FatalError, RetriableError
from edsync.mirror import locks

log = structlog.get_logger("edsync.coordination")


class LockLostError(RetriableError):
    """This process no longer holds the source's lock: it must not write."""


class SourceLocks(Protocol):
    def acquire(self, source: str) -> bool:
        """Hold the source's lock (or already do); False: another process has it."""
        ...

    def holds(self, source: str) -> bool:
        """Whether the lock is still ours, checked against the server."""
        ...

    def release_all(self) -> None: ...


class LocalLocks:
    """SQLite: the run lock already makes this the only writer."""

    def acquire(self, source: str) -> bool:
        return True

    def holds(self, source: str) -> bool:
        return True

    def release_all(self) -> None:
        return None


def lock_key(source: str) -> int:
    """A stable non-negative 63-bit key per source name (pg_advisory_lock's bigint)."""
    digest = hashlib.sha256(f"edsync:source:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class AdvisoryLocks:
    """One dedicated connection per held lock, so the lock lives with the session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.held: dict[str, Connection] = {}
        self.mutex = threading.Lock()

    def acquire(self, source: str) -> bool:
        with self.mutex:
            if source in self.held and self._alive(source):
                return True
            conn = self.engine.connect()
            try:
                got = locks.try_lock(conn, lock_key(source))
                conn.commit()  # the session lock outlives the transaction
            except DBAPIError:
                conn.invalidate()
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self.held[source] = conn
            log.info("source_lock_acquired", source=source, pid=os.getpid())
            return True

    def holds(self, source: str) -> bool:
        with self.mutex:
            return source in self.held and self._alive(source)

    def _alive(self, source: str) -> bool:
        conn = self.held[source]
        try:
            mine = locks.held(conn, lock_key(source))
            conn.commit()
        except DBAPIError:
            mine = False
            conn.invalidate()
        if not mine:
            del self.held[source]
            conn.close()
            log.warning("source_lock_lost", source=source, pid=os.getpid())
            return False
        return True

    def release_all(self) -> None:
        with self.mutex:
            for conn in self.held.values():
                conn.close()  # closing the session releases its advisory locks
            self.held.clear()


def source_locks(engine: Engine) -> SourceLocks:
    return AdvisoryLocks(engine) if engine.dialect.name == "postgresql" else LocalLocks()


class Fence:
    """The apply gate for one poll: a page is written only while the lock is ours."""

    def __init__(self, gate: threading.Lock, locks: SourceLocks, source: str) -> None:
        self.gate = gate
        self.locks = locks
        self.source = source

    def __enter__(self) -> Fence:
        self.gate.acquire()
        if not self.locks.holds(self.source):
            self.gate.release()
            raise LockLostError(
                f"source {self.source!r}: another edsync took over its lock; not writing"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self.gate.release()


def sqlite_run_lock(engine: Engine) -> IO[str] | None:
    """Refuse a second daemon on one SQLite file; the open file holds the lock."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    path = Path(f"{database}.run.lock")
    while True:
        handle = _lock_file(path, database)
        # A stopping holder deletes the file before unlocking it: a lock won on
        # a file no longer at the path locks nothing, so try the new one.
        if _same_file(handle, path):
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _lock_file(path: Path, database: str) -> IO[str]:
    import fcntl

    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FatalError(
            f"another edsync run (pid {holder}) is already using {database}; SQLite has one "
            "writer: stop it, or use a PostgreSQL mirror to run several"
        ) from None
    return handle


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    mine = os.fstat(handle.fileno())
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def release_run_lock(handle: IO[str] | None) -> None:
    """A clean stop leaves no ``*.run.lock`` behind: delete it while still
    holding it, then let go (see ``sqlite_run_lock`` for why in that order)."""
    if handle is None or handle.closed:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(handle.name)
    handle.close()
