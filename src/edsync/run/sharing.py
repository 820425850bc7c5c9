"""Which process polls which source (SPEC 8).

On PostgreSQL, an advisory lock per source, all of a daemon's held on one
coordination session (one connection, whatever the number of sources). The
daemon's coordinator shares the sources out: each of the W live daemons
(counted by their sessions) holds about N/W, claims free ones while under its
share and hands idle ones back while over it, so a daemon that joins or
leaves makes the others rebalance. A poll only runs on a source this process
holds, and the holder checks the lock is still its own before every page it
writes. When a daemon dies its session ends, its locks are released, and the
survivors' next rebalance takes its sources.

On SQLite there is one writer by design: a second ``edsync run`` on the same
file refuses to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import structlog

from edsync.errors import FatalError, RetriableError
from edsync.mirror import Mirror, MirrorError, locks
from edsync.mirror.db import sqlite_file

log = structlog.get_logger("edsync.coordination")


class LockLostError(RetriableError):
    """This process no longer holds the source's lock: it must not write."""


class SourceLocks(Protocol):
    def enter(self, source: str) -> bool:
        """Whether this process polls ``source`` now; if so it is busy (never
        handed over) until ``leave``."""
        ...

    def leave(self, source: str) -> None: ...

    def holds(self, source: str) -> bool:
        """Whether the lock is still ours, checked against the server."""
        ...

    def release_all(self) -> None: ...


class LocalLocks:
    """SQLite: the run lock already makes this the only writer."""

    def enter(self, source: str) -> bool:
        return True

    def leave(self, source: str) -> None:
        return None

    def holds(self, source: str) -> bool:
        return True

    def release_all(self) -> None:
        return None


def lock_key(source: str) -> int:
    """A stable non-negative 63-bit key per source name (pg_advisory_lock's bigint)."""
    digest = hashlib.sha256(f"edsync:source:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _rank(member: str, source: str) -> int:
    """Rendezvous order: daemons prefer different sources, so their claims rarely collide."""
    return int.from_bytes(hashlib.sha256(f"{member}:{source}".encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True)
class Share:
    """What one rebalance does: sources to claim, sources to hand back."""

    claim: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


def plan_share(
    names: Sequence[str],
    mine: Collection[str],
    others: Collection[str],
    *,
    members: int,
    busy: Collection[str],
    member: str,
) -> Share:
    """This daemon's move towards holding ``ceil(N / members)`` of ``names``.

    ``others``: held by another daemon. Sources no longer configured are handed
    back at once; over the share, idle ones (never one mid-poll: a hand-over
    happens between polls, so at a page boundary); under it, free ones.
    """
    configured = set(names)
    gone = tuple(sorted(s for s in mine if s not in configured and s not in busy))
    kept = [s for s in mine if s in configured]
    want = math.ceil(len(configured) / max(members, 1))
    if len(kept) > want:
        idle = sorted((s for s in kept if s not in busy), key=lambda s: _rank(member, s))
        return Share(release=gone + tuple(idle[: len(kept) - want]))
    held = set(mine) | set(others)
    free = sorted((s for s in names if s not in held), key=lambda s: -_rank(member, s))
    return Share(claim=tuple(free[: want - len(kept)]), release=gone)


@dataclass(frozen=True, slots=True)
class Handover:
    """What a rebalance changed, for the logs and metrics."""

    claimed: tuple[str, ...] = ()
    released: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    held: int = 0
    members: int = 0


class SharedLocks:
    """PostgreSQL: this daemon's source locks, all on one session."""

    def __init__(self, engine: Mirror) -> None:
        self.engine = engine
        self.member = locks.member_name()
        self.held: set[str] = set()
        self.busy: set[str] = set()
        self.mutex = threading.Lock()
        self._coordination: locks.Session | None = None

    def enter(self, source: str) -> bool:
        with self.mutex:
            if source not in self.held:
                return False
            self.busy.add(source)
            return True

    def leave(self, source: str) -> None:
        with self.mutex:
            self.busy.discard(source)

    def holds(self, source: str) -> bool:
        with self.mutex:
            if source not in self.held:
                return False
            try:
                mine = self._session().holds(lock_key(source))
            except MirrorError:
                self._drop_session()
                return False
            if not mine:
                self._lose([source])
            return mine

    def rebalance(self, names: Sequence[str]) -> Handover:
        """Claim or hand back sources towards this daemon's share (``plan_share``)."""
        with self.mutex:
            try:
                return self._rebalance(names)
            except MirrorError as exc:
                log.warning("coordination_failed", error=exc.said)
                lost = tuple(sorted(self.held))
                self._drop_session()
                return Handover(lost=lost)

    def _rebalance(self, names: Sequence[str]) -> Handover:
        session = self._session()
        keys = {lock_key(name): name for name in set(names) | self.held}
        taken, members = session.survey()
        # A lock this session lost (a dropped connection, an unlock elsewhere).
        lost = tuple(sorted(s for s in self.held if not taken.get(lock_key(s), False)))
        self._lose(lost)
        others = {keys[k] for k, mine in taken.items() if not mine and k in keys}
        share = plan_share(
            names, self.held, others, members=members, busy=self.busy, member=self.member
        )
        got = session.exchange(
            release=[lock_key(s) for s in share.release],
            claim=[lock_key(s) for s in share.claim],
        )
        claimed = tuple(sorted(keys[k] for k in got))
        self.held.difference_update(share.release)
        self.held.update(claimed)
        _log_moves(claimed, share.release)
        return Handover(claimed, share.release, lost, len(self.held), members)

    def _session(self) -> locks.Session:
        if self._coordination is None:
            self._coordination = locks.Session.open(self.engine, self.member)
        return self._coordination

    def _drop_session(self) -> None:
        """The session is gone, and every lock it held with it."""
        session, self._coordination = self._coordination, None
        if session is not None:
            session.drop()
        self._lose(sorted(self.held))

    def _lose(self, sources: Iterable[str]) -> None:
        for source in sources:
            self.held.discard(source)
            log.warning("source_lock_lost", source=source, pid=os.getpid())

    def release_all(self) -> None:
        with self.mutex:
            session, self._coordination = self._coordination, None
            if session is not None:
                session.close()  # closing the session releases its advisory locks
            self.held.clear()


def _log_moves(claimed: Sequence[str], released: Sequence[str]) -> None:
    for source in claimed:
        log.info("source_lock_acquired", source=source, pid=os.getpid())
    for source in released:
        log.info("source_handed_over", source=source, pid=os.getpid())


@dataclass(frozen=True, slots=True)
class Holder:
    """The daemon polling a source, as ``status`` shows it."""

    host: str
    pid: int


def holders(engine: Mirror, names: Iterable[str]) -> dict[str, Holder]:
    """Which daemon holds each of ``names`` now (absent: none does)."""
    if not locks.shared(engine):
        daemon = _run_lock_holder(engine)
        return {} if daemon is None else dict.fromkeys(names, daemon)
    held = locks.holders(engine)
    found = {}
    for name in names:
        member = locks.member_of(held.get(lock_key(name), ""))
        if member is not None:
            found[name] = Holder(*member)
    return found


def source_locks(engine: Mirror) -> SourceLocks:
    return SharedLocks(engine) if locks.shared(engine) else LocalLocks()


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


def sqlite_run_lock(engine: Mirror) -> IO[str] | None:
    """Refuse a second daemon on one SQLite file; the open file holds the lock."""
    found = _run_lock_path(engine)
    if found is None:
        return None
    path, database = found
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


def _run_lock_path(engine: Mirror) -> tuple[Path, str] | None:
    database = sqlite_file(engine)
    if database is None:
        return None
    return Path(f"{database}.run.lock"), database


def _run_lock_holder(engine: Mirror) -> Holder | None:
    """The daemon holding a SQLite mirror's run lock, if one does."""
    import fcntl

    found = _run_lock_path(engine)
    if found is None:
        return None
    try:
        handle = found[0].open()
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = handle.read().strip()
            return Holder(socket.gethostname(), int(pid)) if pid.isdigit() else None
        return None  # a file left behind, no daemon on it


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
