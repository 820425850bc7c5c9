"""What a new user meets first: ``--version``, help for every option, a second demo."""

from __future__ import annotations

import argparse
import importlib.metadata
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edsync import cli
from edsync.cli import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"edsync {importlib.metadata.version('edsync')}"


@pytest.mark.parametrize("command", ["demo", "simulate"])
def test_every_option_has_help(command: str) -> None:
    (commands,) = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    options = commands.choices[command]._actions
    assert len(options) > 1
    for option in options:
        assert option.help, f"edsync {command} {'/'.join(option.option_strings)}: no help"


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_second_demo_says_so_and_starts_afresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "mine.db"
    assert main(["demo", "--events", "300", "--db", str(db)]) == 0
    assert "starting it afresh" not in capsys.readouterr().err
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("CREATE TABLE leftover (x)")
    conn.close()

    assert main(["demo", "--events", "300", "--db", str(db)]) == 0

    assert "left from an earlier demo: starting it afresh" in capsys.readouterr().err
    assert _rows(db, "SELECT name FROM sqlite_master WHERE name = 'leftover'") == []
    assert _rows(db, "SELECT COUNT(*) FROM records")[0][0] > 0


def test_demo_never_deletes_a_file_it_did_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    precious = tmp_path / "mirror.db"
    conn = sqlite3.connect(precious)
    with conn:
        conn.execute("CREATE TABLE keep (x)")
    conn.close()
    before = precious.read_bytes()

    assert main(["demo", "--events", "300", "--db", str(precious)]) == 2

    assert "is not an earlier demo's mirror" in capsys.readouterr().err
    assert precious.read_bytes() == before
    assert main(["demo", "--db", str(tmp_path / "nowhere" / "demo.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
