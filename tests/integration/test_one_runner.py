"""`run` and `backfill` poll through one runner: a source failing in any way,
a database error included, never stops the others (SPEC 5.2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.mirror import checkpoints
from tests.conftest import mirror_engine
from tests.integration.daemon import DaemonProcess

FAST = 'interval = "1s"\n'


def second_source(url: str, extra: str = "") -> str:
    return (
        f'[sources.second]\nkind = "dreamapply"\nbase_url = "{url}"\n'
        'api_key_env = "DREAMAPPLY_API_KEY"\nmax_requests_per_minute = 0\nsnapshot = false\n'
        + extra
    )


def refuse_rows_of(engine: Engine, source: str) -> str:
    """The database itself refuses every ledger row of ``source`` with a data
    error (SQLSTATE 22000 on PostgreSQL, SQLITE_TOOBIG on SQLite); returns
    the words the error carries."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_row() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN RAISE EXCEPTION 'injected data error' USING ERRCODE = '22000'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW "
                f"WHEN (NEW.source = '{source}') EXECUTE FUNCTION refuse_row()"
            )
            return "injected data error"
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.source = '{source}' "
            "BEGIN SELECT zeroblob(2000000000); END"
        )
        return "string or blob too big"


def test_a_database_error_in_one_source_leaves_the_other_to_backfill(
    backend: str,
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = make_simulator(events=200), make_simulator(events=150)
    path = write_config(first.url, extra=second_source(second.url))
    engine = mirror_engine(path)
    words = refuse_rows_of(engine, "dreamapply")  # the first source polled

    assert main(["backfill", "-c", str(path)]) == 1

    drained = checkpoints.load(engine, "second")
    assert drained is not None
    assert drained.cursor is not None
    assert drained.cursor.value == "150"
    failed = checkpoints.load(engine, "dreamapply")
    assert failed is not None
    assert failed.cursor is None
    assert failed.consecutive_failures == 1
    assert failed.last_error is not None
    assert words in failed.last_error
    assert "[SQL:" not in failed.last_error
    err = capsys.readouterr().err
    assert f"source 'dreamapply' failed: mirror database: {words}" in err
    assert "Traceback" not in err
    assert "[SQL:" not in err
    engine.dispose()


def test_a_database_error_in_one_source_leaves_the_other_to_run(
    backend: str, make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    first, second = make_simulator(events=200), make_simulator(events=150)
    path = write_config(first.url, extra=FAST + second_source(second.url, FAST))
    engine = mirror_engine(path)
    words = refuse_rows_of(engine, "dreamapply")

    daemon = DaemonProcess(path)
    try:
        failed = daemon.wait_event("poll_failed", source="dreamapply", kind="mirror")
        assert words in failed["error"]
        # What the database said, not SQLAlchemy's dump of the statement and
        # its parameters (the events' payloads: personal data in the logs).
        assert "[SQL:" not in failed["error"]
        daemon.wait_event("poll_done", source="second", cursor="150", seen=True)
        daemon.wait_event("poll_failed", source="dreamapply", failures=2, seen=True)
        second.journal.append(10)
        daemon.wait_event("poll_done", source="second", cursor="160")
        assert daemon.terminate()[0] == 0
    finally:
        daemon.close()
    assert b"Traceback" not in daemon.output()
    engine.dispose()
