"""Read-only commands never write; only run/backfill/db upgrade/demo create the mirror.

``status``, ``db current`` and ``quarantine list`` open the mirror read-only
(SQLite ``mode=ro``, a PostgreSQL read-only session), migrate nothing, create
nothing, and say plainly (exit 1) when there is no mirror yet. The commands
that create it refuse a directory that does not exist (exit 78, naming
``mirror.url`` and the file): a typo is not silently made a new mirror.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import MirrorError
from edsync.mirror.db import create_mirror_engine, ensure_schema

SOURCE = """
[sources.da]
kind = "dreamapply"
base_url = "https://apply.example.edu"
api_key_env = "DA_KEY"
"""
READERS = [["status"], ["status", "--json"], ["db", "current"], ["quarantine", "list"]]


def config_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "edsync.toml"
    path.write_text(f'[mirror]\nurl = "{url}"\n' + SOURCE)
    return path


def tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_read_only_command_without_a_mirror_says_so_and_creates_nothing(
    tmp_path: Path,
    mirror_url: Callable[[str], str],
    backend: str,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    url = mirror_url("new/mirror.db") if backend == "sqlite" else mirror_url("new")
    path = config_file(tmp_path, url)

    code = main([command[0], "-c", str(path), *command[1:]])

    err = capsys.readouterr().err
    if backend == "sqlite":
        assert code == 1
        assert "no mirror at" in err
        assert f"mirror.url in {path}" in err
        assert not (tmp_path / "new").exists()  # neither the directory nor a file
    else:
        # The database exists (a DBA made it) but holds no mirror: nothing is created.
        if command[0] == "db":
            assert code == 0  # "current: none": the answer, not an error
        else:
            assert code == 1
            assert "no mirror at" in err
        assert tables(url) == []


@pytest.mark.parametrize("command", [["backfill"], ["run"], ["db", "upgrade"]], ids=" ".join)
def test_creating_commands_refuse_a_missing_directory_naming_mirror_url(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.setenv("DA_KEY", "x")
    path = config_file(tmp_path, f"sqlite:///{tmp_path / 'typo' / 'mirror.db'}")

    assert main([command[0], "-c", str(path), *command[1:]]) == 78

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{path}: mirror.url:" in line
    assert "does not exist" in line
    assert not (tmp_path / "typo").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.sqlite_only
def test_status_reads_a_read_only_sqlite_file_and_changes_nothing(
    tmp_path: Path, mirror_url: Callable[[str], str], backend: str
) -> None:
    path = config_file(tmp_path, mirror_url("mirror.db"))
    assert main(["db", "-c", str(path), "upgrade"]) == 0
    db = tmp_path / "mirror.db"
    for leftover in (tmp_path / "mirror.db-wal", tmp_path / "mirror.db-shm"):
        leftover.unlink(missing_ok=True)
    db.chmod(0o400)
    before = _digest(db)
    try:
        for command in READERS:
            assert main([command[0], "-c", str(path), *command[1:]]) == 0, command
    finally:
        db.chmod(0o600)
    assert _digest(db) == before


def test_read_only_commands_cannot_write_and_do_not_migrate(
    tmp_path: Path, mirror_url: Callable[[str], str], backend: str
) -> None:
    url = mirror_url("mirror.db")
    path = config_file(tmp_path, url)
    assert main(["db", "-c", str(path), "upgrade"]) == 0

    reader = create_mirror_engine(load_config(path, secrets=False).mirror, access="read")
    with pytest.raises(MirrorError, match=r"read-only|readonly"), reader.begin() as conn:
        conn.exec_driver_sql("DELETE FROM checkpoints")
    reader.dispose()

    # A mirror behind the code: status refuses and leaves it as it was.
    writer = create_mirror_engine(load_config(path, secrets=False).mirror)
    with writer.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0006'")
    with writer.begin() as conn:  # undo 0007 to 0011 (the views read 0009's column)
        listed = (
            "SELECT name FROM sqlite_master WHERE type = 'view'"
            if backend == "sqlite"
            else "SELECT viewname FROM pg_views WHERE schemaname = current_schema()"
        )
        for (name,) in conn.exec_driver_sql(listed).all():
            conn.exec_driver_sql(f'DROP VIEW "{name}"')
        conn.exec_driver_sql("ALTER TABLE records DROP COLUMN typed")
        conn.exec_driver_sql("DROP INDEX ix_records_parent")
        conn.exec_driver_sql("ALTER TABLE records DROP COLUMN parent_id")
        conn.exec_driver_sql("ALTER TABLE checkpoints DROP COLUMN purged_at")
        conn.exec_driver_sql("ALTER TABLE checkpoints DROP COLUMN webhook_at")
        conn.exec_driver_sql("DROP TABLE refresh_queue")
        conn.exec_driver_sql("ALTER TABLE deliveries DROP COLUMN failing_since")
        conn.exec_driver_sql("CREATE INDEX ix_records_entity ON records (source, entity)")
    assert main(["status", "-c", str(path)]) == 1
    with writer.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0006"
    ensure_schema(writer, auto_migrate=True)  # and the writers still upgrade it
    writer.dispose()
    if make_url(url).get_backend_name() == "sqlite":
        assert os.stat(tmp_path / "mirror.db").st_mode & 0o777 == 0o600
