"""Statements on the DBAPI cursor under SQLAlchemy, against a real mirror."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from edsync.mirror import MirrorError
from edsync.mirror.sql import Into, adapt, dumps, execute, insert_rows, loads

_INSERT = (
    "INSERT INTO checkpoints (source, updated_at, events_total, consecutive_failures) "
    "VALUES (?, ?, 0, 0)"
)


_EVENT = Into(
    "events",
    ("source", "event_id", "position", "type", "entity", "op", "payload", "status", "applied_at"),
)
_NOW = "2026-01-01T00:00:00+00:00"


def _event(event_id: str, payload: str, op: str | None = "updated") -> tuple[object, ...]:
    return ("da", event_id, 2**62 + int(event_id), "t", "offer", op, payload, "applied", _NOW)


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


def test_driver_errors_come_out_as_every_statements_do(engine: Engine) -> None:
    """Callers (the applier's retry, the CLI's exit codes) handle ``MirrorError``,
    raised from the driver's own, as for a statement SQLAlchemy ran."""
    dbapi = engine.dialect.loaded_dbapi
    with engine.connect() as conn, conn.begin():
        execute(conn, adapt(conn, _INSERT), ("da", "now"))
        with pytest.raises(MirrorError) as duplicate:
            execute(conn, adapt(conn, _INSERT), ("da", "now"))
        assert isinstance(duplicate.value.__cause__, dbapi.IntegrityError)
        assert duplicate.value.transient  # a concurrent writer: the page is retried
    with engine.connect() as conn, conn.begin():
        with pytest.raises(MirrorError) as bad:
            execute(conn, "SELEKT 1", ())
        assert isinstance(bad.value.__cause__, dbapi.Error)
    with engine.connect() as conn, conn.begin():
        with pytest.raises(MirrorError) as same:
            conn.exec_driver_sql("SELEKT 1")
        assert (type(same.value.__cause__), same.value.said) == (
            type(bad.value.__cause__),
            bad.value.said,
        )


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

    with pytest.raises(MirrorError) as lost:
        query_after_the_server_ends_the_session()
    assert lost.value.disconnected
    with engine.connect() as conn:
        assert execute(conn, "SELECT pg_backend_pid()", ())[0][0] != pids[0]


def test_insert_rows_writes_every_value_as_given_in_row_order(engine: Engine) -> None:
    """Strings with quotes, backslashes and non-ASCII text, JSON text, NULLs,
    64-bit integers: stored as they were, ids handed out in row order."""
    values = [{"name": 'O\'Neil \\ "Jo" Ž 😀'}, [1, None, True], "a string"]
    rows = [_event(str(n), dumps(v), None if n == 1 else "updated") for n, v in enumerate(values)]
    with engine.begin() as conn:
        insert_rows(conn, _EVENT, rows)
    with engine.connect() as conn:
        stored = execute(
            conn, "SELECT event_id, position, op, payload, applied_at FROM events ORDER BY id", ()
        )
        assert [row[0] for row in stored] == ["0", "1", "2"]
        assert [row[1] for row in stored] == [2**62, 2**62 + 1, 2**62 + 2]
        assert [row[2] for row in stored] == ["updated", None, "updated"]
        assert [loads(row[3], conn) for row in stored] == values
        assert all(str(row[4]).startswith("2026-01-01") for row in stored)


def test_insert_rows_applies_the_conflict_clause(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, _EVENT, [_event("1", "1"), _event("2", "2")])
        insert_rows(
            conn,
            _EVENT,
            [_event("2", "20"), _event("3", "3")],
            "ON CONFLICT (source, event_id) DO NOTHING",
        )
    with engine.connect() as conn:
        stored = execute(conn, "SELECT event_id, payload FROM events ORDER BY id", ())
        assert [(row[0], loads(row[1], conn)) for row in stored] == [("1", 1), ("2", 2), ("3", 3)]


@pytest.mark.postgresql_only
def test_insert_rows_refuses_a_value_too_long_rather_than_cutting_it(engine: Engine) -> None:
    """``source`` is VARCHAR(100): a longer name fails the statement, as a
    plain INSERT does; it is never stored cut short."""
    with pytest.raises(MirrorError, match="too long"), engine.begin() as conn:
        insert_rows(conn, _EVENT, [_event("1", "1"), ("s" * 101, *_event("2", "2")[1:])])
    with engine.connect() as conn:
        assert execute(conn, "SELECT count(*) FROM events", ()) == [(0,)]
