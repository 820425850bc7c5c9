"""The Edlink source against the simulator: bootstrap, stream, gaps and resync."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from freezegun import freeze_time
from sqlalchemy import Engine

from edsync import sources
from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import checkpoints
from edsync.mirror.sql import adapt
from edsync.model import SnapshotPage
from edsync.run.drain import drain
from edsync.sources.edlink import EdlinkSource
from tests.conftest import EDLINK_TOKEN as TOKEN
from tests.conftest import json_value, mirror_engine, mirror_snapshot
from tests.integration.daemon import DaemonProcess

FAST = ("page_size = 50", 'interval = "1s"')


def mirror_records(engine: Engine) -> dict[tuple[str, str], tuple[bool, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity, entity_id, deleted, data FROM records WHERE source = 'edlink'"
        ).all()
    return {(e, i): (bool(d), json_value(engine.dialect.name, data)) for e, i, d, data in rows}


def graph(sim: Any) -> dict[tuple[str, str], tuple[bool, dict[str, Any]]]:
    return {key: (t.deleted, dict(t.data)) for key, t in sim.edlink.graph().items()}


def assert_mirror_matches_graph(
    engine: Engine, sim: Any, *, every_deleted: bool, after_gap: bool = False
) -> None:
    """Live objects equal; tombstones carry the last data. Entities deleted before
    the mirror's first snapshot are only known when ``every_deleted``. After a
    gap, a tombstone keeps the last data edsync saw: a revival and re-deletion
    inside the purged window cannot be known."""
    mirror, truth = mirror_records(engine), graph(sim)
    live = {k: v for k, v in truth.items() if not v[0]}
    assert {k: v for k, v in mirror.items() if not v[0]} == live
    for key, (deleted, data) in mirror.items():
        if after_gap and deleted:
            assert truth[key][0] is True, key
        else:
            assert truth[key] == (deleted, data), key
    if every_deleted:
        assert mirror == truth
    assert {entity for entity, _ in live} == {
        "district", "school", "session", "course", "person", "class", "section",
        "enrollment", "agent",
    }  # fmt: skip


def test_a_fresh_mirror_is_the_graph_and_follows_the_stream(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=60)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    assert_mirror_matches_graph(engine, sim, every_deleted=False)

    # Then the stream: creates, updates, deletes and revivals, all applied.
    sim.edlink.append(400)
    assert main(["backfill", "-c", str(path)]) == 0
    assert_mirror_matches_graph(engine, sim, every_deleted=False)
    with engine.connect() as conn:
        count, top = conn.exec_driver_sql(
            "SELECT COUNT(*), MAX(position) FROM events WHERE source = 'edlink'"
        ).one()
    assert (count, top) == (400, 400)
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == sim.edlink.head()


def stream_events(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT position, event_id FROM events WHERE source = 'edlink' ORDER BY position"
        ).all()
    return [(position, event_id) for position, event_id in rows]


def test_backfill_until_stops_at_that_event_or_time_and_a_later_run_resumes(
    make_simulator: Callable[..., Any],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=0, edlink_people=30, edlink_events=0)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    # Three events a second, an hour ago: dates rise, and some are equal.
    with freeze_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)) as clock:
        for _ in range(100):
            sim.edlink.append(3)
            clock.tick(1)
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body = http.get("/api/v2/graph/events", params={"$first": 10000}).json()
    stream = [(event["id"], dt.datetime.fromisoformat(event["date"])) for event in body["$data"]]
    assert len(stream) == 300
    engine = mirror_engine(path)

    # An event id (a UUID, not ordered): up to that event, inclusive; the cursor is it.
    until_id = stream[119][0]
    assert main(["backfill", "-c", str(path), "--until", until_id]) == 0
    assert stream_events(engine) == [(n + 1, stream[n][0]) for n in range(120)]
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == until_id

    # Again, the cursor already there: nothing more, and no drain to the end to find
    # out (the first event dated after that event's date stops it).
    served = len(sim.requests)
    assert main(["backfill", "-c", str(path), "--until", until_id]) == 0
    assert len(stream_events(engine)) == 120
    assert [r.path for r in sim.requests[served:]] == [
        f"/api/v2/graph/events/{until_id}",
        "/api/v2/graph/events",
    ]

    # An ISO 8601 time: every event dated then or before, inclusive.
    until_time = stream[199][1]
    assert main(["backfill", "-c", str(path), "--until", until_time.isoformat()]) == 0
    kept = [event_id for event_id, when in stream if when <= until_time]
    assert [event_id for _, event_id in stream_events(engine)] == kept
    assert len(kept) == 201  # the 201st has the same date as the 200th

    # Without --until the next run goes on from the last event kept.
    assert main(["backfill", "-c", str(path)]) == 0
    assert stream_events(engine) == [(n + 1, stream[n][0]) for n in range(300)]
    assert_mirror_matches_graph(engine, sim, every_deleted=True)

    # An id Edlink does not serve is a mistake said as such, not a drain to the end.
    capsys.readouterr()
    unknown = "00000000-0000-4000-8000-000000000000"
    assert main(["backfill", "-c", str(path), "--until", unknown]) == 1
    assert "Edlink serves no such event" in capsys.readouterr().err


def test_a_mirror_from_an_empty_stream_matches_every_entity_and_revives(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=40, edlink_events=0)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    sim.edlink.append(1500)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    assert_mirror_matches_graph(engine, sim, every_deleted=True)

    with engine.connect() as conn:
        ops = conn.exec_driver_sql(
            "SELECT entity, entity_id, op FROM events WHERE source = 'edlink' ORDER BY position"
        ).all()
    history: dict[tuple[str, str], list[str]] = {}
    for entity, entity_id, op in ops:
        history.setdefault((entity, entity_id), []).append(op)
    revived = [k for k, seq in history.items() if "deleted" in seq and seq[-1] == "created"]
    assert revived, "the stream should hold a delete followed by a create"
    mirror = mirror_records(engine)
    for key in revived:
        assert mirror[key][0] is False


def test_replaying_pages_changes_nothing(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=30)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    sim.edlink.append(200)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    before = mirror_snapshot(engine)
    # Wind the checkpoint back to event 40, as a crash before later commits would.
    with engine.begin() as conn:
        event_id = conn.exec_driver_sql(
            "SELECT event_id FROM events WHERE source = 'edlink' AND position = 40"
        ).scalar_one()
        conn.exec_driver_sql(
            adapt(conn, "UPDATE checkpoints SET cursor = ?, position = 40 WHERE source = 'edlink'"),
            (event_id,),
        )
    assert main(["backfill", "-c", str(path)]) == 0
    assert mirror_snapshot(engine) == before


def test_the_legacy_event_shape_is_accepted(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=20, edlink_legacy_shape=True)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    sim.edlink.append(150)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    assert_mirror_matches_graph(engine, sim, every_deleted=False)
    with engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.exec_driver_sql(
                "SELECT status, COUNT(*) FROM events WHERE source = 'edlink' GROUP BY status"
            ).all()
        )
    assert statuses == {"applied": 150}


class AppendingDuringSnapshot(EdlinkSource):
    """Changes upstream while the snapshot runs, as a busy district would."""

    def __init__(self, inner: EdlinkSource, sim: Any, count: int) -> None:
        super().__init__(inner.settings, inner.http)
        self.sim, self.count, self.appended = sim, count, 0

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        for page in super().snapshot(resume):
            if page.entity == "person" and not self.appended:
                self.sim.edlink.append(self.count)
                self.appended = self.count
            yield page


def test_a_checkpoint_past_retention_resyncs_without_losing_changes(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=0, edlink_people=40)
    path = edlink_config(sim.url, *FAST)
    assert main(["backfill", "-c", str(path)]) == 0
    sim.edlink.append(100)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)

    with freeze_time(later, tick=True):
        sim.edlink.append(60)  # changes while edsync was away: only a snapshot brings them
        source = sources.create(load_config(path).sources["edlink"])
        assert isinstance(source, EdlinkSource)
        busy = AppendingDuringSnapshot(source, sim, 25)
        result = drain(engine, busy)
        busy.close()

    assert busy.appended == 25
    assert_mirror_matches_graph(engine, sim, every_deleted=False, after_gap=True)
    head = sim.edlink.head()
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.gap is None
    assert checkpoint.cursor is not None
    assert checkpoint.cursor.value == head
    assert result.received == 25  # the changes made during the snapshot, streamed after it


def test_manual_resync_stops_the_source_and_the_other_keeps_running(
    make_simulator: Callable[..., Any],
    edlink_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=100, edlink_people=20)
    path = edlink_config(sim.url, *FAST, 'resync = "manual"', with_dreamapply=True)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = mirror_engine(path)
    with engine.begin() as conn:  # a cursor Edlink no longer knows
        conn.exec_driver_sql(
            "UPDATE checkpoints SET cursor = 'purged-event-id' WHERE source = 'edlink'"
        )
    capsys.readouterr()

    assert main(["backfill", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "gap_detected" in err
    assert "INVALID_CURSOR" in err
    assert "--reset" in err

    assert main(["status", "-c", str(path), "--json"]) == 0
    report = {s["source"]: s for s in orjson.loads(capsys.readouterr().out)["sources"]}
    assert "INVALID_CURSOR" in report["edlink"]["gap"]
    assert report["dreamapply"]["gap"] is None

    daemon = DaemonProcess(path, {"EDLINK_TOKEN": TOKEN})
    try:
        daemon.wait_event("poll_failed", source="edlink", kind="gap")
        sim.journal.append(10)
        daemon.wait_event("poll_done", source="dreamapply", cursor="110")
        assert daemon.terminate()[0] == 0
    finally:
        daemon.close()

    # A reset re-runs the snapshot and clears the gap.
    assert main(["backfill", "-c", str(path), "--source", "edlink", "--reset"]) == 0
    checkpoint = checkpoints.load(engine, "edlink")
    assert checkpoint is not None
    assert checkpoint.gap is None
    assert_mirror_matches_graph(engine, sim, every_deleted=False, after_gap=True)


def test_a_snapshot_resumes_at_the_list_it_was_reading(
    make_simulator: Callable[..., Any], edlink_config: Callable[..., Path]
) -> None:
    # A `$next` link expires, so a resumed snapshot restarts the list it was in.
    sim = make_simulator(events=0, edlink_people=40)
    source = sources.create(load_config(edlink_config(sim.url, *FAST)).sources["edlink"])
    try:
        snapshotter = source.snapshotter
        assert snapshotter is not None
        whole = list(snapshotter.snapshot())
        tokens = [page.resume for page in whole]
        assert tokens[-1] == "done"
        resumed = list(snapshotter.snapshot("person"))
        assert resumed[0].entity == "person"
        first_person = next(i for i, page in enumerate(whole) if page.entity == "person")
        assert [p.entity for p in resumed] == [p.entity for p in whole[first_person:]]
        assert list(snapshotter.snapshot("done")) == []
    finally:
        source.close()
