"""The mirror is the only door to the database: its failures leave it as
``MirrorError`` (what the database said, the driver's exception as the cause),
and the times it reads as aware UTC datetimes, on both engines."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import MirrorError, checkpoints, db, reads
from edsync.mirror.apply import Applier
from edsync.mirror.sql import adapt
from edsync.model import Cursor, Quarantined
from edsync.run.sharing import SharedLocks
from edsync.settings import MirrorSettings
from edsync.sources import records as kind_records

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
WHEN = dt.datetime(2026, 3, 1, 12, 30, 0, 250_000, tzinfo=dt.UTC)


def test_a_failed_statement_says_what_the_database_said(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    with pytest.raises(MirrorError) as failed, engine.connect() as conn:
        conn.exec_driver_sql(
            adapt(conn, "SELECT payload FROM no_such_table WHERE source = ?"), ("a secret",)
        )
    assert "no_such_table" in failed.value.said
    assert str(failed.value) == f"mirror database: {failed.value.said}"
    assert "[SQL:" not in str(failed.value)
    assert "a secret" not in str(failed.value)
    assert isinstance(failed.value.__cause__, engine.dialect.loaded_dbapi.Error)


@pytest.mark.sqlite_only
def test_a_pool_that_stays_busy_is_a_mirror_error(
    backend: str, mirror_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait for a free connection ends outside any statement: a
    MirrorError all the same, which a poll records as the mirror's failure."""
    monkeypatch.setattr(db, "POOL_WAIT", 0.05)
    engine = db.create_mirror_engine(MirrorSettings(url=mirror_url("mirror.db")))
    held = [engine.connect() for _ in range(db.SQLITE_POOL_SIZE + db.SQLITE_POOL_OVERFLOW)]
    try:
        with pytest.raises(MirrorError, match="QueuePool limit"):
            engine.connect()
    finally:
        for conn in held:
            conn.close()
        engine.dispose()


def test_a_page_the_database_refuses_for_its_data_is_not_retried_as_a_lock(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    """The page's transaction: a lock or a concurrent writer is "not written",
    tried again (RetriableError); a value the database refuses is a plain
    MirrorError, whatever the engine."""
    engine = make_engine()
    applier = Applier(engine, "da", None, records=kind_records("edlink"))
    # PostgreSQL refuses the time (a DataError); SQLite stores any text.
    event = Quarantined("1", 1, "t", "person", {"id": 1}, "bad", occurred_at="not a time")
    if backend == "sqlite":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN "
                "SELECT RAISE(ABORT, 'refused here'); END"
            )
        with pytest.raises(MirrorError, match=r"^mirror: not written: refused here") as failed:
            applier.apply([event], Cursor("1", 1))
        assert failed.value.transient
    else:
        with pytest.raises(MirrorError, match=r"^mirror database: ") as failed:
            applier.apply([event], Cursor("1", 1))
        assert not failed.value.transient
    assert checkpoints.load(engine, applier.source) is None


def test_the_times_the_mirror_reads_are_aware_utc_datetimes(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    engine = make_engine()
    if backend == "postgresql":  # a session elsewhere: still UTC out of the mirror
        with engine.connect() as conn:
            name = conn.exec_driver_sql("SELECT current_database()").scalar_one()
            conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Kolkata'")
            conn.commit()
        engine.dispose()
    checkpoints.record_success(engine, "da", lag=3)
    checkpoints.record_purged(engine, "da", WHEN)
    checkpoint = checkpoints.load(engine, "da")
    assert checkpoint is not None
    assert checkpoint.last_success_at is not None
    assert checkpoint.last_success_at.tzinfo is dt.UTC
    progress = reads.progress(engine)["da"]
    assert (progress.last_success_at, progress.lag) == (checkpoint.last_success_at, 3)
    purged = checkpoints.purged_at(engine, "da")
    assert purged == WHEN
    assert purged is not None
    assert purged.tzinfo is dt.UTC


def test_status_and_quarantine_list_print_times_as_the_mirror_wrote_them(
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ISO 8601 UTC to the microsecond, on both engines (SQLite: the stored text)."""
    url = mirror_url("mirror.db")
    path = tmp_path / "edsync.toml"
    path.write_text(
        f'[mirror]\nurl = "{url}"\n[sources.da]\nkind = "edlink"\n'
        'base_url = "https://ed.example.org"\ntoken_env = "ED_TOKEN"\n'
    )
    assert main(["db", "-c", str(path), "upgrade"]) == 0
    engine = db.create_mirror_engine(load_config(path, secrets=False).mirror)
    applier = Applier(engine, "da", None, records=kind_records("edlink"))
    applier.apply([Quarantined("e1", 1, "t", "person", {"id": 1}, "bad")], Cursor("e1", 1))
    checkpoints.record_success(engine, "da")
    with engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT last_success_at, (SELECT applied_at FROM events) FROM checkpoints"
        ).one()
    engine.dispose()
    capsys.readouterr()

    assert main(["status", "-c", str(path), "--json"]) == 0
    (source,) = orjson.loads(capsys.readouterr().out)["sources"]
    assert main(["quarantine", "-c", str(path), "list", "--json"]) == 0
    (line,) = [orjson.loads(text) for text in capsys.readouterr().out.splitlines()]

    assert STAMP.match(source["last_success"])
    assert STAMP.match(line["received_at"])
    if backend == "sqlite":
        assert (source["last_success"], line["received_at"]) == tuple(stored)
    else:
        shown = (source["last_success"], line["received_at"])
        assert tuple(dt.datetime.fromisoformat(text) for text in shown) == tuple(stored)


@pytest.mark.postgresql_only
def test_a_dropped_coordination_session_loses_its_sources_and_a_new_one_takes_them(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    """The server ends the daemon's session (a restart, a failover): the locks
    went with it, the holder says so instead of writing, and the next
    rebalance opens a session and claims the sources again."""
    engine = make_engine()
    other = db.create_mirror_engine(MirrorSettings(url=_url(engine)))  # another pool
    shared = SharedLocks(engine)
    try:
        assert set(shared.rebalance(["a", "b"]).claimed) == {"a", "b"}
        assert shared.holds("a")
        _end_sessions(other, shared.member)
        assert not shared.holds("a")
        assert shared.held == set()
        assert set(shared.rebalance(["a", "b"]).claimed) == {"a", "b"}
        _end_sessions(other, shared.member)
        moved = shared.rebalance(["a", "b"])  # fails: the session is gone
        assert (set(moved.lost), shared.held) == ({"a", "b"}, set())
        assert set(shared.rebalance(["a", "b"]).claimed) == {"a", "b"}
    finally:
        shared.release_all()
        other.dispose()


@pytest.mark.postgresql_only
def test_a_pooled_connection_the_server_ended_is_replaced_unseen(
    make_engine: Callable[..., Engine], backend: str
) -> None:
    """A PostgreSQL restart ends every pooled connection: the pre-ping finds
    the one handed out dead and connects again, no error raised."""
    engine = make_engine()
    other = db.create_mirror_engine(MirrorSettings(url=_url(engine)))
    try:
        with engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with other.connect() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
    finally:
        other.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _end_sessions(engine: Engine, name: str) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        conn.commit()
