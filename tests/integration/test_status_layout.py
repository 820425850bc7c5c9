"""``edsync status`` on an 80-column terminal: every line fits, no number is cut."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edsync.cli import main

ANSI = re.compile(r"\x1b\[[0-9;]*m")
DEAD = """
[sources.edlink]
kind = "edlink"
base_url = "http://127.0.0.1:9"
token_env = "EDLINK_TOKEN"
retry_for = "1s"

[sinks.hub]
kind = "learninghub"
base_url = "{url}"
program_id = "FOO"
user_id = "edsync"
api_key_env = "HUB_KEY"
"""


def terminal_status(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """What ``edsync status`` prints on an 80-column terminal, without colour codes."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(sys.stdout, "isatty", lambda: True)
        assert main(["status", "-c", str(path)]) == 0
    return ANSI.sub("", capsys.readouterr().out)


def test_status_fits_80_columns_and_shows_every_number_whole(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EDLINK_TOKEN", "x")
    monkeypatch.setenv("HUB_KEY", "sim-hub-key")
    sim = make_simulator(events=2673)
    path = write_config(sim.url, extra=DEAD.format(url=sim.url))
    assert main(["backfill", "-c", str(path)]) == 1  # edlink cannot be reached
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)

    text = terminal_status(path, monkeypatch, capsys)

    lines = text.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, "\n".join(too_long)
    assert "…" not in text
    words = set(text.split())
    dreamapply, edlink = report["sources"]
    assert dreamapply["events_total"] == 2673
    for source in (dreamapply, edlink):
        assert source["source"] in words
        for key in ("events_total", "records", "quarantined"):
            assert str(source[key]) in words, (source["source"], key)
    assert str(dreamapply["cursor"]) in words
    assert dreamapply["last_success"] in words
    # The long error folds onto more lines, whole: its words all appear in order.
    assert edlink["last_error"]
    assert " ".join(edlink["last_error"].split()) in " ".join(text.split())
    assert "failing" in text
    (sink,) = report["sinks"]
    assert "hub" in words
    assert str(sink["delivered"]) in words
