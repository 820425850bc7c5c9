"""Under byEvents (always sent, API v9) journal ids jump over the events the
filter hides: between pages, after the last page, between runs. None of that
is a gap (SPEC 2.1): the backfill exits 0, status reports no gap, and every
event of the names asked for is applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from edsync.settings import MirrorSettings

# Every story event but the edits: the most frequent name, so ids jump often.
HIDDEN = "Application was edited"


def events_setting(sim: Any) -> str:
    names = [name for name in sim.journal.positions_by_name if name != HIDDEN]
    assert len(names) > 40
    return "events = " + orjson.dumps(names).decode() + "\npage_size = 25\n"


def ledger(path: Path) -> list[tuple[int, str]]:
    engine = create_mirror_engine(MirrorSettings(url=load_config(path).mirror.url))
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT position, type FROM events").all()
    finally:
        engine.dispose()
    return sorted((int(position), type_) for position, type_ in rows)


def matching(sim: Any) -> list[int]:
    """Ids of the journal's events of the names asked for."""
    return sorted(
        position + 1
        for name, positions in sim.journal.positions_by_name.items()
        if name != HIDDEN and not name.startswith("Ticket")
        for position in positions
    )


def test_ids_jumping_under_the_filter_are_no_gap(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=1200, seed=5)
    path = write_config(sim.url, extra=events_setting(sim))
    assert main(["backfill", "-c", str(path)]) == 0
    applied = ledger(path)
    assert [position for position, _ in applied] == matching(sim)
    assert HIDDEN not in {type_ for _, type_ in applied}
    # More events, and after them names the filter hides: the next run starts
    # past a jump and ends before one.
    sim.journal.append(300)
    sim.journal.append_raw({"logged": "2026-06-01T08:00:00+00:00", "event": HIDDEN})
    sim.journal.append_raw({"logged": "2026-06-01T08:00:00+00:00", "event": "Ticket was raised"})
    assert main(["backfill", "-c", str(path)]) == 0
    assert [position for position, _ in ledger(path)] == matching(sim)
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    [source] = orjson.loads(capsys.readouterr().out)["sources"]
    assert source["gap"] is None
    assert source["quarantined"] == 0
    assert source["events_total"] == len(matching(sim))
