"""Statements on the DBAPI cursor under SQLAlchemy, against a real mirror."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from edsync.mirror.sql import adapt, execute

_INSERT = (
    "INSERT INTO checkpoints (source, updated_at, events_total, consecutive_failures) "
    "VALUES (?, ?, 0, 0)"
)


@pytest.fixture
def engine(backend: str, make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def test_execute_runs_in_the_callers_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        transaction = conn.begin()
        execute(conn, adapt(conn, _INSERT), ("da", "2026-01-01T00:00:00+00:00"))
        rows = execute(conn, adapt(conn, "SELECT source FROM checkpoints"), ())
        assert rows == [("da",)]
        transaction.rollback()
        assert execute(conn, adapt(conn, "SELECT source FROM checkpoints"), ()) == []


def test_execute_many_writes_every_row(engine: Engine) -> None:
    now = "2026-01-01T00:00:00+00:00"
    with engine.begin() as conn:
        assert execute(conn, adapt(conn, _INSERT), [("a", now), ("b", now)], many=True) == []
    with engine.connect() as conn:
        rows = execute(conn, adapt(conn, "SELECT source FROM checkpoints ORDER BY source"), ())
    assert rows == [("a",), ("b",)]


def test_driver_errors_come_out_as_sqlalchemy_raises_them(engine: Engine) -> None:
    """Callers (the applier's retry, the CLI's exit codes) handle SQLAlchemy's
    exception family; the driver's own must not leak past ``execute``."""
    dbapi = engine.dialect.loaded_dbapi
    with engine.connect() as conn, conn.begin():
        execute(conn, adapt(conn, _INSERT), ("da", "now"))
        with pytest.raises(IntegrityError) as duplicate:
            execute(conn, adapt(conn, _INSERT), ("da", "now"))
        assert isinstance(duplicate.value.orig, dbapi.IntegrityError)
    with engine.connect() as conn, conn.begin():
        with pytest.raises(DBAPIError) as bad:
            execute(conn, "SELEKT 1", ())
        assert isinstance(bad.value.orig, dbapi.Error)


@pytest.mark.postgresql_only
def test_a_lost_connection_says_so_and_the_next_checkout_works(engine: Engine) -> None:
    """The server ends the session mid-transaction (a restart, a failover):
    the error says so, and the next checkout gets a working connection."""
    pids: list[int] = []

    def query_after_the_server_ends_the_session() -> None:
        with engine.begin() as conn:  # as the applier's page transaction
            pids.append(execute(conn, "SELECT pg_backend_pid()", ())[0][0])
            with engine.connect() as other:
                other.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pids[0],))
            execute(conn, adapt(conn, "SELECT source FROM checkpoints"), ())

    with pytest.raises(DBAPIError) as lost:
        query_after_the_server_ends_the_session()
    assert lost.value.connection_invalidated
    with engine.connect() as conn:
        assert execute(conn, "SELECT pg_backend_pid()", ())[0][0] != pids[0]
