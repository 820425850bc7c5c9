"""The mirror's failures, as the rest of edsync sees them.

The database driver and SQLAlchemy raise their own exception families; the
mirror translates them in one place (``translate``) into ``MirrorError``,
wherever they leave the database: every engine ``db.create_mirror_engine``
makes runs ``on_error`` for a failed statement, connect, commit or rollback,
and its pool translates a wait for a connection that times out;
``sql.execute`` translates its raw cursor's. Nothing outside ``mirror/``
catches a SQLAlchemy exception. A unit of work that is tried again later
(a page's transaction, a migration) says so with ``transient_failures``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from edsync.errors import EdsyncError, RetriableError


class MirrorError(EdsyncError):
    """The mirror database failed.

    The message is what the database said (``said``), never SQLAlchemy's dump
    of the statement and its parameters (the events' payloads: personal data
    in the logs); the driver's own exception is ``__cause__``.

    ``transient``: the driver files the error under the database's state
    rather than the statement's data (DB-API ``OperationalError`` or
    ``IntegrityError``: a lock, a full disk, a read-only file, a lost or
    refused connection, a concurrent writer), so the same work may succeed
    later. (SQLite files a syntax error there too.)
    ``disconnected``: the connection is gone (the pool will not hand it out again).
    ``doing``: what the mirror was doing, when it says (``transient_failures``).
    """

    def __init__(
        self,
        said: str,
        *,
        doing: str = "",
        transient: bool = False,
        disconnected: bool = False,
    ) -> None:
        self.said = said
        self.doing = doing
        self.transient = transient
        self.disconnected = disconnected
        super().__init__(f"mirror: {doing}: {said}" if doing else f"mirror database: {said}")


class RetriableMirrorError(MirrorError, RetriableError):
    """A transient failure of a unit of the mirror's work (a page's transaction,
    a migration): nothing of it was written, and it is tried again later."""


def translate(error: SQLAlchemyError, *, disconnected: bool = False) -> MirrorError:
    """``error`` as the rest of edsync sees it (the caller raises it ``from``
    the driver's exception)."""
    orig = getattr(error, "orig", None)
    return MirrorError(
        str(orig if orig is not None else error).strip(),
        transient=isinstance(error, OperationalError | IntegrityError),
        disconnected=disconnected or bool(getattr(error, "connection_invalidated", False)),
    )


def on_error(context: ExceptionContext) -> MirrorError | None:
    """SQLAlchemy's ``handle_error`` hook: every error of a statement, a
    connect, a commit or a rollback leaves the engine as a ``MirrorError``.

    Not the pool's pre-ping: SQLAlchemy reconnects when a ping finds the
    connection gone (a PostgreSQL restart), and a replacement would stop it.
    """
    error = context.sqlalchemy_exception
    if error is None or context.is_pre_ping:
        return None
    return translate(error, disconnected=context.is_disconnect)


@contextmanager
def transient_failures(doing: str, *, retried: bool = True) -> Iterator[None]:
    """Within: a transient ``MirrorError`` says what was ``doing`` ("not
    written", "cannot migrate"); ``retried``: as a ``RetriableMirrorError``,
    the work being tried again later (the next poll, the next start)."""
    try:
        yield
    except MirrorError as exc:
        if not exc.transient or exc.doing:
            raise
        kind = RetriableMirrorError if retried else MirrorError
        raise kind(
            exc.said, doing=doing, transient=True, disconnected=exc.disconnected
        ) from exc.__cause__
