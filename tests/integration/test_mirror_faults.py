"""The mirror itself failing: locked, full, read-only. A clear error, the cursor
where it was, and a later run (or the daemon's next poll) finishes the job."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from edsync import sources
from edsync.cli import main
from edsync.config import MirrorSettings, load_config
from edsync.errors import RetriableError
from edsync.mirror import checkpoints
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.sync import drain
from tests.conftest import mirror_snapshot
from tests.integration.daemon import DaemonProcess


def cursor_of(db: Path) -> str | None:
    engine = create_mirror_engine(MirrorSettings(f"sqlite:///{db}"))
    checkpoint = checkpoints.load(engine, "dreamapply")
    engine.dispose()
    return checkpoint.cursor.value if checkpoint and checkpoint.cursor else None


def with_url(path: Path, url: str) -> None:
    text = path.read_text()
    start = text.index('url = "sqlite:///')
    end = text.index("\n", start)
    path.write_text(text[:start] + f'url = "{url}"' + text[end:])


def test_a_locked_mirror_fails_clearly_and_a_later_run_completes(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url)
    db = tmp_path / "mirror.db"
    assert main(["backfill", "-c", str(path), "--until", "1024"]) == 0
    with_url(path, f"sqlite:///{db}?timeout=0.2")
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
    assert cursor_of(db) == "1024"
    assert main(["backfill", "-c", str(path)]) == 0
    assert cursor_of(db) == "3000"


def test_a_full_disk_leaves_the_cursor_and_nothing_half_written(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url)
    clean_path = write_config(sim.url, db="clean.db", name="clean.toml")
    assert main(["backfill", "-c", str(clean_path)]) == 0
    assert main(["backfill", "-c", str(path), "--until", "1024"]) == 0
    config = load_config(path)

    engine = create_mirror_engine(config.mirror)

    @event.listens_for(engine, "connect")
    def _small_disk(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 3}")

    ensure_schema(engine, auto_migrate=True)
    before = mirror_snapshot(engine)
    source = sources.create(config.sources["dreamapply"])
    with pytest.raises(RetriableError, match="full"):
        drain(engine, source)
    source.close()
    engine.dispose()
    assert cursor_of(tmp_path / "mirror.db") == "1024"

    after = create_mirror_engine(config.mirror)
    assert mirror_snapshot(after)["events"] == before["events"]
    assert main(["backfill", "-c", str(path)]) == 0
    clean = create_mirror_engine(load_config(clean_path).mirror)
    assert mirror_snapshot(after) == mirror_snapshot(clean)


def test_a_read_only_mirror_fails_each_poll_and_the_daemon_keeps_trying(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    sim = make_simulator(events=500)
    path = write_config(sim.url, extra='interval = "1s"\n')
    assert main(["backfill", "-c", str(path), "--until", "100"]) == 0
    with_url(path, f"sqlite:///file:{tmp_path / 'mirror.db'}?mode=ro&uri=true")

    daemon = DaemonProcess(path)
    try:
        first = daemon.wait_event("poll_failed", source="dreamapply")
        assert "readonly" in first["error"]
        daemon.wait_event("poll_failed", source="dreamapply", failures=2)
        assert daemon.proc.poll() is None  # still running, trying again each interval
        assert daemon.terminate()[0] == 0
    finally:
        daemon.close()
    assert cursor_of(tmp_path / "mirror.db") == "100"
