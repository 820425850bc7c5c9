"""Edlink refusing the token or the integration mid-run: a credential or source
error that backs off and recovers, never a gap or a resync (SPEC 2.2, 5.2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.mirror import checkpoints
from edsync_sim import Simulator
from edsync_sim.server import RecordedRequest
from tests.conftest import EDLINK_TOKEN as TOKEN
from tests.conftest import mirror_engine
from tests.integration.daemon import DaemonProcess

FAST = ("page_size = 50", 'interval = "1s"')
EVENTS = "/api/v2/graph/events"


def status_of(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["status", "-c", str(path), "--json"]) == 0
    report: dict[str, Any] = orjson.loads(capsys.readouterr().out)["sources"][0]
    assert report["source"] == "edlink"
    return report


def events_seen(sim: Simulator) -> list[tuple[str, str]]:
    with sim.edlink.locked() as graph:
        bodies = graph.event_bodies(0, graph.events_count)
    return [(e["id"], e["type"]) for e in map(orjson.loads, bodies)]


def record_count(engine: Engine, *, deleted: bool | None = None) -> int:
    sql = "SELECT COUNT(*) FROM records WHERE source = 'edlink'"
    if deleted is not None:
        sql += f" AND deleted = {'TRUE' if deleted else 'FALSE'}"
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(sql).scalar_one())


def only_the_stream(requests: list[RecordedRequest]) -> None:
    """No resync began: neither a `$last` head nor a list endpoint was asked for."""
    assert requests
    assert all(r.path == EVENTS for r in requests), [r.path for r in requests]
    assert not any("$last" in r.query for r in requests)


def break_on_request(sim: Simulator, number: int, path: str, breaker: Callable[[], None]) -> None:
    """Run ``breaker`` when the ``number``-th request to ``path`` arrives, before it is answered."""
    seen = 0

    def hook(request: RecordedRequest) -> None:
        nonlocal seen
        if request.path == path:
            seen += 1
            if seen == number:
                breaker()

    sim.on_request = hook


# -- the token turns invalid or expires between two pages of one drain --------------------


def _rotate(sim: Simulator) -> None:
    sim.edlink_integration.token = "rotated-token"


def _expire(sim: Simulator) -> None:
    sim.edlink_integration.token_expired = True


def _fix_rotated(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDLINK_TOKEN", "rotated-token")


def _fix_expired(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    sim.edlink_integration.token = "renewed-token"
    sim.edlink_integration.token_expired = False
    monkeypatch.setenv("EDLINK_TOKEN", "renewed-token")


@pytest.mark.parametrize(
    ("code", "breaker", "fixer"),
    [("INVALID_TOKEN", _rotate, _fix_rotated), ("EXPIRED_TOKEN", _expire, _fix_expired)],
)
def test_a_token_refused_mid_run_stops_backfill_without_a_gap_and_resumes_once_fixed(
    make_simulator: Callable[..., Simulator],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    breaker: Callable[[Simulator], None],
    fixer: Callable[[Simulator, pytest.MonkeyPatch], None],
) -> None:
    sim = make_simulator(events=0, edlink_people=30)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    sim.edlink.append(120)
    stream = events_seen(sim)[-120:]
    # The first page (50 events) is applied; the token dies before the second.
    break_on_request(sim, 2, EVENTS, lambda: breaker(sim))
    first = len(sim.requests)
    capsys.readouterr()

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "source 'edlink'" in err
    assert "EDLINK_TOKEN" in err
    assert code in err
    assert "gap_detected" not in err
    assert TOKEN not in err
    failed = sim.requests[first:]
    only_the_stream(failed)
    assert len(failed) == 2, "the refused $next is not retried from $after"
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.gap is None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == stream[49][0]
    report = status_of(path, capsys)
    assert report["gap"] is None
    assert "EDLINK_TOKEN" in report["last_error"]
    assert code in report["last_error"]

    sim.on_request = None
    fixer(sim, monkeypatch)
    resumed = len(sim.requests)
    assert main(["backfill", "-c", str(path)]) == 0
    again = sim.requests[resumed:]
    only_the_stream(again)
    assert again[0].query["$after"] == stream[49][0]
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == stream[-1][0]
    with engine.connect() as conn:
        applied = conn.exec_driver_sql(
            "SELECT event_id FROM events WHERE source = 'edlink' ORDER BY position"
        ).scalars()
        assert list(applied) == [event_id for event_id, _ in stream]
    assert status_of(path, capsys)["consecutive_failures"] == 0


def test_a_disabled_integration_is_a_source_error_not_a_gap(
    make_simulator: Callable[..., Simulator],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=0, edlink_people=20)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    before = checkpoints.load(engine, "edlink")
    sim.edlink.append(30)
    sim.edlink_integration.state = "disabled"
    first = len(sim.requests)
    capsys.readouterr()

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert "INVALID_INTEGRATION_STATE" in err
    assert "gap_detected" not in err
    only_the_stream(sim.requests[first:])
    after = checkpoints.load(engine, "edlink")
    assert before is not None
    assert after is not None
    assert after.cursor == before.cursor
    assert after.gap is None
    assert "INVALID_INTEGRATION_STATE" in status_of(path, capsys)["last_error"]

    sim.edlink_integration.state = "active"
    assert main(["backfill", "-c", str(path)]) == 0
    after = checkpoints.load(engine, "edlink")
    assert after is not None
    assert after.cursor is not None
    assert after.cursor.value == sim.edlink.head()


def test_a_paused_integration_is_still_read(
    make_simulator: Callable[..., Simulator], edlink_config: Callable[..., Path]
) -> None:
    # Edlink: "paused: the sync has been paused ... Users can still make API requests"
    # (api/v2.0/models/internal/enums/integration-state.md).
    sim = make_simulator(events=0, edlink_people=20)
    sim.edlink_integration.state = "paused"
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0


def test_a_snapshot_meeting_an_expired_token_stops_and_resumes_without_deleting(
    make_simulator: Callable[..., Simulator],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=0, edlink_people=120)
    path = edlink_config(sim.url, *FAST)
    # The token expires when the snapshot reaches its second page of people.
    break_on_request(sim, 2, "/api/v2/graph/people", lambda: _expire(sim))
    first = len(sim.requests)
    assert main(["backfill", "-c", str(path)]) == 1
    engine = mirror_engine(path)
    assert record_count(engine, deleted=True) == 0
    kept = record_count(engine)
    assert kept > 0
    refused = [r for r in sim.requests[first:] if r.path == "/api/v2/graph/people"]
    assert len(refused) == 2, "a refused token is not retried"
    later = sim.requests[first:][sim.requests[first:].index(refused[-1]) + 1 :]
    assert later == [], "nothing after the refusal"
    report = status_of(path, capsys)
    assert report["gap"] is None
    assert "EXPIRED_TOKEN" in report["last_error"]
    assert report["snapshot"] is not None

    sim.on_request = None
    sim.edlink_integration.token_expired = False
    assert main(["backfill", "-c", str(path)]) == 0
    live = sum(1 for truth in sim.edlink.graph().values() if not truth.deleted)
    assert record_count(engine, deleted=False) == live
    assert record_count(engine, deleted=True) == 0


# -- the daemon backs off and recovers by itself --------------------------------------------


def test_the_daemon_backs_off_on_an_expired_token_and_recovers_by_itself(
    make_simulator: Callable[..., Simulator], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=20)
    path = edlink_config(sim.url, *FAST)
    daemon = DaemonProcess(path, {"EDLINK_TOKEN": TOKEN})
    try:
        daemon.wait_event("snapshot_done", source="edlink")
        sim.edlink.append(10)
        daemon.wait_event("poll_done", source="edlink", cursor=sim.edlink.head())

        sim.edlink_integration.token_expired = True
        first = len(sim.requests)
        one = daemon.wait_event("poll_failed", source="edlink", failures=1)
        two = daemon.wait_event("poll_failed", source="edlink", failures=2)
        assert one["kind"] == two["kind"] == "auth"
        assert "EDLINK_TOKEN" in two["error"]
        assert "EXPIRED_TOKEN" in two["error"]
        assert two["retry_in"] == 2.0, "a refused credential backs off"
        only_the_stream(sim.requests[first:])

        sim.edlink_integration.token_expired = False
        sim.edlink.append(5)
        daemon.wait_event("poll_done", source="edlink", cursor=sim.edlink.head())
        assert not any(line.get("event") == "gap_detected" for line in daemon.seen)
        assert daemon.terminate()[0] == 0
    finally:
        daemon.close()


# -- any other code on the stream: a source error, never a gap -----------------------------


@pytest.mark.parametrize(
    "code",
    [
        "UNKNOWN_PROVIDER",
        "UNSUPPORTED_OPERATION",
        "ENTITY_NOT_PRESENT_IN_SOURCE",
        "INVALID_PAGE_SIZE",
        "SOMETHING_NEW",  # not documented yet
    ],
)
def test_a_code_that_is_not_about_the_cursor_fails_the_poll_without_gap_or_resync(
    make_simulator: Callable[..., Simulator],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    code: str,
) -> None:
    """SPEC 2.2: only a refusal of the stored `$after` is a gap. The simulator
    answers the stream with ``code`` until the fault is cleared."""
    sim = make_simulator(events=0, edlink_people=30)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    before = checkpoints.load(engine, "edlink")
    assert before is not None
    sim.edlink.append(20)
    sim.inject(400, route="edlink-events", code=code, times=1_000)
    first = len(sim.requests)
    capsys.readouterr()

    assert main(["backfill", "-c", str(path)]) == 1

    err = capsys.readouterr().err
    assert code in err
    assert "gap_detected" not in err
    failed = sim.requests[first:]
    only_the_stream(failed)
    assert len(failed) == 1, "a refusal is not retried within the poll"
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.gap is None
    assert checkpoint.cursor == before.cursor
    report = status_of(path, capsys)
    assert report["gap"] is None
    assert code in report["last_error"]

    sim.clear_faults()
    resumed = len(sim.requests)
    assert main(["backfill", "-c", str(path)]) == 0
    only_the_stream(sim.requests[resumed:])
    assert record_count(engine) >= 30
