"""`backfill --since/--until/--reset/--source`, `status` and `db` against the simulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from tests.conftest import mirror_snapshot


def positions(config: Path) -> list[int]:
    engine = create_mirror_engine(load_config(config).mirror)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT position FROM events ORDER BY position").all()
    engine.dispose()
    return [row[0] for row in rows]


def test_until_stops_there_and_a_later_run_resumes(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=2500)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path), "--until", "1500"]) == 0
    assert positions(path) == list(range(1, 1501))
    assert main(["backfill", "-c", str(path)]) == 0
    assert positions(path) == list(range(1, 2501))


def test_since_sets_where_a_new_mirror_starts(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=1200)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path), "--since", "1001"]) == 0
    assert positions(path) == list(range(1001, 1201))


def test_reset_replays_the_feed_as_no_ops(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=1500)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = create_mirror_engine(load_config(path).mirror)
    before = mirror_snapshot(engine)
    served = len(sim.requests)
    assert main(["backfill", "-c", str(path), "--reset"]) == 0
    assert mirror_snapshot(engine) == before
    assert [r.query.get("bySince") for r in sim.requests[served:]][:2] == [None, None]


def test_unknown_source_is_a_usage_error(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_config(make_simulator(events=1).url)
    assert main(["backfill", "-c", str(path), "--source", "nope"]) == 2
    assert "no source named nope" in capsys.readouterr().err


def test_status_json_and_db_current(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=300)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path), "--source", "dreamapply"]) == 0
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    (source,) = orjson.loads(capsys.readouterr().out)["sources"]
    assert source["cursor"] == "300"
    assert source["events_total"] == 300
    assert source["consecutive_failures"] == 0
    assert source["last_success"] is not None
    assert source["records"] > 0
    assert main(["db", "-c", str(path), "current"]) == 0
    assert "current: 0007" in capsys.readouterr().out


def test_check_reaches_the_source(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=42)
    path = write_config(sim.url)
    assert main(["check", "-c", str(path)]) == 0
    assert "source dreamapply: ok (42 events upstream)" in capsys.readouterr().out
    sim.inject(401, times=10)
    assert main(["check", "-c", str(path)]) == 1
    assert "source dreamapply: FAILED" in capsys.readouterr().out
