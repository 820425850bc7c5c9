"""The mirror itself failing: locked, full, read-only. A clear error, the cursor
where it was, and a later run (or the daemon's next poll) finishes the job."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from edsync import sources
from edsync.cli import main
from edsync.config import load_config
from edsync.errors import RetriableError
from edsync.mirror import checkpoints
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.run.drain import drain
from edsync.settings import MirrorSettings
from tests.conftest import PG_URL_ENV, mirror_snapshot
from tests.integration.daemon import DaemonProcess

TABLES = ("records", "events", "checkpoints", "signals", "deliveries")


def cursor_of(url: str) -> str | None:
    engine = create_mirror_engine(MirrorSettings(url))
    checkpoint = checkpoints.load(engine, "dreamapply")
    engine.dispose()
    return checkpoint.cursor.value if checkpoint and checkpoint.cursor else None


def with_url(path: Path, url: str) -> None:
    """Point the config's ``[mirror] url`` elsewhere."""
    text = path.read_text()
    found = re.search(r'^url = ".*"$', text, re.MULTILINE)
    assert found is not None
    path.write_text(text[: found.start()] + f'url = "{url}"' + text[found.end() :])


def with_options(url: str, options: str) -> str:
    """A PostgreSQL URL whose sessions start with ``options`` (libpq ``-c name=value``)."""
    return make_url(url).update_query_dict({"options": options}).render_as_string(False)


def psycopg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(False)


@pytest.mark.sqlite_only
def test_a_locked_mirror_fails_clearly_and_a_later_run_completes(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    mirror_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url)
    url = mirror_url("mirror.db")
    db = make_url(url).database
    assert db is not None
    assert main(["backfill", "-c", str(path), "--until", "1024"]) == 0
    with_url(path, f"{url}?timeout=0.2")
    capsys.readouterr()

    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer sits on the lock
    try:
        assert main(["backfill", "-c", str(path)]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    err = capsys.readouterr().err
    assert "database is locked" in err
    assert "Traceback" not in err
    assert cursor_of(url) == "1024"
    assert main(["backfill", "-c", str(path)]) == 0
    assert cursor_of(url) == "3000"


@pytest.mark.postgresql_only
def test_a_locked_postgresql_mirror_fails_clearly_and_a_later_run_completes(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    mirror_url: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import psycopg

    sim = make_simulator(events=3000)
    path = write_config(sim.url)
    url = mirror_url("mirror.db")
    assert main(["backfill", "-c", str(path), "--until", "1024"]) == 0
    with_url(path, with_options(url, "-c lock_timeout=200"))
    capsys.readouterr()

    # Another session sits on the mirror's tables (a DBA's ALTER TABLE would).
    with psycopg.connect(psycopg_url(url)) as holder:
        holder.execute(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE")
        assert main(["backfill", "-c", str(path)]) == 1
        holder.rollback()

    err = capsys.readouterr().err
    assert "canceling statement due to lock timeout" in err
    assert "Traceback" not in err
    assert cursor_of(url) == "1024"
    assert main(["backfill", "-c", str(path)]) == 0
    assert cursor_of(url) == "3000"


@pytest.fixture
def small_disk(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[[str], None]]:
    """``small_disk(url)`` moves that database onto a filesystem of its own, and
    yields ``fill()``, which leaves that filesystem no free block (SQLite: a
    ``max_page_count`` a few pages past the file)."""
    if backend == "sqlite":
        yield lambda url: None
        return
    import psycopg

    server = request.getfixturevalue("pg_server")
    if os.environ.get(PG_URL_ENV) or os.geteuid() != 0:
        pytest.skip("a full PostgreSQL disk needs the throwaway cluster and root to mount a tmpfs")
    import pwd

    admin = psycopg_url(f"{server}/postgres")
    mount = Path(tempfile.mkdtemp(prefix="edsync-disk-"))
    postgres = pwd.getpwnam("postgres")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o",
         f"size=32m,mode=0700,uid={postgres.pw_uid},gid={postgres.pw_gid}", "tmpfs", str(mount)],
        check=True, capture_output=True,
    )  # fmt: skip
    tablespace = f"edsync_small_{uuid.uuid4().hex[:8]}"
    moved: list[str] = []

    def place(url: str) -> None:
        database = make_url(url).database
        with psycopg.connect(admin, autocommit=True) as conn:
            if not moved:
                conn.execute(f"CREATE TABLESPACE {tablespace} LOCATION '{mount}'")
            conn.execute(f'ALTER DATABASE "{database}" SET TABLESPACE {tablespace}')
        moved.append(str(database))

    try:
        yield place
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for database in moved:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            if moved:
                conn.execute(f"DROP TABLESPACE IF EXISTS {tablespace}")
        subprocess.run(["umount", str(mount)], check=False, capture_output=True)
        os.rmdir(mount)


def fill_disk(directory: Path) -> Path:
    """Leave the filesystem holding ``directory`` no block free; returns the filler."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while out.write(b"\0" * 65536):
                pass
        except OSError:
            pass
    assert os.statvfs(directory).f_bavail == 0
    return filler


def test_a_full_disk_leaves_the_cursor_and_nothing_half_written(
    make_simulator: Callable[..., Any],
    small_disk: Callable[[str], None],
    write_config: Callable[..., Path],
    mirror_url: Callable[[str], str],
    backend: str,
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url)
    url = mirror_url("mirror.db")
    small_disk(url)
    clean_path = write_config(sim.url, db="clean.db", name="clean.toml")
    assert main(["backfill", "-c", str(clean_path)]) == 0
    assert main(["backfill", "-c", str(path), "--until", "1024"]) == 0
    config = load_config(path)

    engine = create_mirror_engine(config.mirror)
    filler = None
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _small_disk(dbapi_connection: Any, _record: Any) -> None:
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 3}")

        full = "full"  # "database or disk is full"
    else:
        with engine.connect() as conn:
            location = conn.exec_driver_sql(
                "SELECT pg_tablespace_location(dattablespace) FROM pg_database "
                "WHERE datname = current_database()"
            ).scalar_one()
        filler = fill_disk(Path(location))
        full = "No space left on device"

    ensure_schema(engine, auto_migrate=True)
    before = mirror_snapshot(engine)
    source = sources.create(config.sources["dreamapply"])
    try:
        with pytest.raises(RetriableError, match=full):
            drain(engine, source)
    finally:
        source.close()
        engine.dispose()
        if filler is not None:
            filler.unlink()
    assert cursor_of(url) == "1024"

    after = create_mirror_engine(config.mirror)
    assert mirror_snapshot(after)["events"] == before["events"]
    assert main(["backfill", "-c", str(path)]) == 0
    clean = create_mirror_engine(load_config(clean_path).mirror)
    assert mirror_snapshot(after) == mirror_snapshot(clean)
    after.dispose()
    clean.dispose()


def test_a_read_only_mirror_fails_each_poll_and_the_daemon_keeps_trying(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    mirror_url: Callable[[str], str],
    backend: str,
) -> None:
    sim = make_simulator(events=500)
    path = write_config(sim.url, extra='interval = "1s"\n')
    url = mirror_url("mirror.db")
    assert main(["backfill", "-c", str(path), "--until", "100"]) == 0
    if backend == "sqlite":
        with_url(path, f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true")
        read_only = "readonly"  # "attempt to write a readonly database"
    else:
        with_url(path, with_options(url, "-c default_transaction_read_only=on"))
        read_only = "read-only transaction"  # "cannot execute INSERT in a read-only ..."

    daemon = DaemonProcess(path)
    try:
        first = daemon.wait_event("poll_failed", source="dreamapply")
        assert read_only in first["error"]
        daemon.wait_event("poll_failed", source="dreamapply", failures=2)
        assert daemon.proc.poll() is None  # still running, trying again each interval
        assert daemon.terminate()[0] == 0
    finally:
        daemon.close()
    assert cursor_of(url) == "100"
