"""Upstream faults and bad data against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from edsync import sources
from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import checkpoints
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.run.drain import drain
from edsync.sources.dreamapply.journal import DreamApplySource
from tests.conftest import DREAMAPPLY_KEY, json_value

LOGGED = "2026-06-01T08:00:00+00:00"


def engine_for(config_path: Path) -> Engine:
    config = load_config(config_path)
    engine = create_mirror_engine(config.mirror)
    ensure_schema(engine, auto_migrate=True)
    return engine


def ledger(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            "SELECT event_id, entity, status, reason FROM events ORDER BY position"
        )
        return [tuple(row) for row in result]


def journal_requests(sim: Any, method: str = "GET") -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.endswith("/journal")]


def test_a_short_page_is_not_the_end_only_an_empty_one_is(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=3000)
    path = write_config(sim.url, extra='expand = ["offer"]\n')
    engine = engine_for(path)
    source = sources.create(load_config(path).sources["dreamapply"])
    assert isinstance(source, DreamApplySource)
    source.limit = 1024  # ask for more than the server will give with expand

    result = drain(engine, source)
    source.close()

    gets = journal_requests(sim)
    assert result.received == 3000
    assert [r.query["bySince"] for r in gets[1:]] == ["513", "1025", "1537", "2049", "2561", "3001"]
    assert all(r.query["limit"] == "1024" for r in gets)
    assert len(ledger(engine)) == 3000


def test_an_empty_feed_costs_one_head(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=100)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    before = len(sim.requests)
    assert main(["backfill", "-c", str(path)]) == 0
    again = sim.requests[before:]
    assert [(r.method, r.query.get("bySince")) for r in again] == [("HEAD", "101")]


def test_retry_after_is_honoured(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=50)
    # Without Retry-After the first backoff is at most 0.5 s + 1 s of jitter.
    sim.inject(429, headers={"Retry-After": "2"})
    path = write_config(sim.url)

    assert main(["backfill", "-c", str(path)]) == 0

    first, second = sim.requests[0], sim.requests[1]
    assert second.at - first.at >= 2.0
    assert len(ledger(engine_for(path))) == 50


def test_5xx_and_resets_are_retried_and_the_cursor_is_exact(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path], fast_retries: None
) -> None:
    sim = make_simulator(events=1500)
    path = write_config(sim.url)
    sim.inject(503)
    sim.inject(500)
    sim.inject(0)  # connection dropped without an answer
    assert main(["backfill", "-c", str(path)]) == 0
    engine = engine_for(path)
    checkpoint = checkpoints.load(engine, "dreamapply")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert (checkpoint.cursor.value, checkpoint.events_total) == ("1500", 1500)


def test_a_malformed_page_that_persists_fails_with_the_cursor_unchanged(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    fast_retries: None,
) -> None:
    sim = make_simulator(events=2000)
    path = write_config(sim.url)
    assert main(["backfill", "-c", str(path)]) == 0
    sim.journal.append(100)
    sim.inject(200, body=b'{"2001": {"logged": "2026-', times=100)

    assert main(["backfill", "-c", str(path)]) == 1

    assert "invalid JSON" in capsys.readouterr().err
    checkpoint = checkpoints.load(engine_for(path), "dreamapply")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == "2000"
    assert checkpoint.consecutive_failures == 1
    assert "invalid JSON" in (checkpoint.last_error or "")


def test_unknown_event_name_is_ledgered_and_the_feed_goes_on(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=10)
    sim.journal.append_raw(
        {"logged": LOGGED, "event": "Applicant was teleported", "applicant": "/api/applicants/1"}
    )
    sim.journal.append(5)
    # byEvents is always sent (API v9): a name edsync does not know arrives
    # when the user asks for it on purpose (or from a server ignoring the filter).
    path = write_config(sim.url, extra='new_events = ["Applicant was teleported"]\n')

    assert main(["backfill", "-c", str(path)]) == 0

    rows = ledger(engine_for(path))
    assert len(rows) == 16
    assert rows[10] == ("11", "unknown", "applied", "unknown event name")
    assert all(status == "applied" for _, _, status, _ in rows)


def test_events_that_cannot_be_normalized_are_quarantined_not_dropped(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=10)
    sim.journal.append_raw("not an object")
    sim.journal.append_raw({"logged": LOGGED, "applicant": "/api/applicants/1"})
    sim.journal.append_raw({"logged": LOGGED, "event": "Offer was edited: ?"})
    sim.journal.append(5)
    path = write_config(sim.url)

    assert main(["backfill", "-c", str(path)]) == 0

    engine = engine_for(path)
    quarantined = [row for row in ledger(engine) if row[2] == "quarantined"]
    assert [row[0] for row in quarantined] == ["11", "12", "13"]
    assert "not an object" in quarantined[0][3]
    assert "no `event` name" in quarantined[1][3]
    assert "names no offer, application or applicant" in quarantined[2][3]
    with engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT payload FROM events WHERE event_id = '11'").scalar()
    assert json_value(engine.dialect.name, raw) == "not an object"
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    (status,) = orjson.loads(capsys.readouterr().out)["sources"]
    assert (status["quarantined"], status["events_total"], status["cursor"]) == (3, 18, "18")


def test_on_invalid_stop_stops_the_source_at_the_bad_event(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=10)
    sim.journal.append_raw({"logged": LOGGED})
    sim.journal.append(5)
    path = write_config(sim.url, extra='on_invalid = "stop"\n')

    assert main(["backfill", "-c", str(path)]) == 1

    assert "stopped at event 11" in capsys.readouterr().err
    engine = engine_for(path)
    assert len(ledger(engine)) == 10
    checkpoint = checkpoints.load(engine, "dreamapply")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == "10"


def test_refused_credentials_name_the_source_and_never_the_key(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = make_simulator(events=10)
    path = write_config(sim.url)
    monkeypatch.setenv("DREAMAPPLY_API_KEY", "wrong-key-do-not-print")

    assert main(["backfill", "-c", str(path)]) == 1

    out, err = capsys.readouterr()
    assert "source 'dreamapply'" in err
    assert "401" in err
    assert "wrong-key-do-not-print" not in out + err
    assert DREAMAPPLY_KEY not in out + err
