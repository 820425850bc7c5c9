"""DreamApply's bootstrap (SPEC 2.1) against a simulator whose journal has
forgotten its oldest events: the mirror starts complete, changes made while
the snapshot runs are kept, a snapshot cut short resumes, and a checkpoint
older than the journal's six months is a gap (a jump in ids is not). On each
backend."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from freezegun import freeze_time
from sqlalchemy import Engine

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror import checkpoints
from edsync.mirror.db import create_mirror_engine
from edsync.settings import MirrorSettings
from edsync.sources.dreamapply import snapshot as dreamapply_snapshot
from edsync_sim.dataset import EVENT_NAMES
from tests.conftest import DREAMAPPLY_KEY, json_value

DAY = 86400.0
SNAPSHOT = 'snapshot = true\nexpand = ["applicant", "application", "offer"]\n'
KINDS = ("applicant", "application", "offer", "task", "reference", "document", "invoice")
# An application's collections: records of their own, or links (flags, courses).
COLLECTIONS = ("offers", "tasks", "references", "documents", "flags", "courses", "scores")


def mirror(engine: Engine) -> dict[tuple[str, int], tuple[dict[str, Any], bool]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity, entity_id, data, deleted FROM records WHERE source = 'dreamapply'"
        ).all()
    return {
        (entity, int(entity_id)): (json_value(engine.dialect.name, data), bool(deleted))
        for entity, entity_id, data, deleted in rows
    }


def open_mirror(path: Path) -> Engine:
    return create_mirror_engine(MirrorSettings(url=load_config(path).mirror.url))


def journal_count(url: str) -> int:
    reply = httpx.head(
        f"{url}/api/journal",
        params={"byEvents": ",".join(EVENT_NAMES)},
        headers={"Authorization": f'DREAM apikey="{DREAMAPPLY_KEY}"'},
    )
    return int(reply.headers["X-Count"])


def assert_current(engine: Engine, sim: Any) -> None:
    """Every resource the endpoints serve live in the mirror under its own id,
    as they serve it (offers with their type's title as status, children linked
    to their application), nothing else live; every purged one deleted."""
    current = sim.journal.current()
    held = mirror(engine)
    live = {key for key, (_, deleted) in held.items() if not deleted}
    assert live == set(current.records)
    for key, upstream in current.records.items():
        data, _ = held[key]
        if "forget_requested" in data:
            # A request the journal brought (one made before the snapshot's
            # head is not in the mirror's journal): shown until DreamApply acts.
            assert data.pop("forget_requested") == current.forget_requests[key[1]], key
        assert comparable(key[0], data) == comparable(key[0], expected(key, upstream, current))
    for key in current.purged:
        assert held[key][1], f"{key} is purged upstream but live in the mirror"


def expected(key: tuple[str, int], upstream: dict[str, Any], current: Any) -> dict[str, Any]:
    parent = current.parents.get(key)
    if parent is None or key[0] == "invoice":
        return upstream
    # The vendor's child objects have no application link: the one read under.
    return {**upstream, "application": f"/api/applications/{parent}"}


def comparable(entity: str, data: dict[str, Any]) -> dict[str, Any]:
    """An application without its collections (records of their own, or
    links), the rest as is."""
    if entity != "application":
        return data
    return {k: v for k, v in data.items() if k not in COLLECTIONS}


class HeldRequest:
    """Holds the simulator's answer to the nth offers request until released:
    a snapshot caught half-way, at a moment the test chooses."""

    def __init__(self, sim: Any, nth_offers: int) -> None:
        self.reached, self.release = threading.Event(), threading.Event()
        self.nth, self.offers = nth_offers, 0
        sim.on_request = self

    def __call__(self, request: Any) -> None:
        if request.path.endswith("/offers"):
            self.offers += 1
            if self.offers == self.nth:
                self.reached.set()
                self.release.wait(timeout=30)


def start_backfill(path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edsync", "backfill", "-c", str(path)],
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


def signal_mid_snapshot(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    *,
    nth_offers: int,
    signum: int,
) -> tuple[Any, subprocess.Popen[bytes], Path]:
    """A backfill snapshotting a 10 000-event history, sent ``signum`` while
    its ``nth_offers`` offers request is held: the simulator, the process, the config."""
    sim = make_simulator(events=10_000, journal_window=2 * DAY)
    sim.embed_offers = False  # a server ignoring expand=offer: one offers request each
    held = HeldRequest(sim, nth_offers=nth_offers)
    path = write_config(sim.url, extra=SNAPSHOT)
    proc = start_backfill(path)
    try:
        assert held.reached.wait(timeout=60)
        proc.send_signal(signum)
    finally:
        held.release.set()
    return sim, proc, path


def test_a_new_mirror_holds_what_exists_not_what_the_journal_remembers(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
) -> None:
    sim = make_simulator(events=10_000, journal_window=2 * DAY)
    assert journal_count(sim.url) < 10_000 / 2  # most of the history is forgotten
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = open_mirror(path)
    try:
        assert_current(engine, sim)
        purged_applicants = [k for k in sim.journal.current().purged if k[0] == "applicant"]
        assert purged_applicants, "the dataset should have deleted or forgotten applicants"
        held = mirror(engine)
        assert all(held[key][1] for key in purged_applicants)
        checkpoint = checkpoints.load(engine, "dreamapply")
        assert checkpoint is not None
        assert checkpoint.cursor is not None
        assert checkpoint.cursor.position == len(sim.journal)  # streams after the head
    finally:
        engine.dispose()


def test_changes_made_while_the_snapshot_runs_reach_the_mirror(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
) -> None:
    sim = make_simulator(events=10_000, journal_window=2 * DAY)
    offers = 0
    lock = threading.Lock()

    def change_mid_snapshot(request: Any) -> None:
        nonlocal offers
        if request.path.endswith("/offers"):
            with lock:
                offers += 1
                if offers in (3, 150):
                    sim.journal.append(400)

    sim.on_request = change_mid_snapshot
    sim.embed_offers = False  # a server ignoring expand=offer: one offers request each
    head = len(sim.journal)
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    assert len(sim.journal) == head + 800
    engine = open_mirror(path)
    try:
        assert_current(engine, sim)
        with engine.connect() as conn:
            streamed = conn.exec_driver_sql("SELECT MIN(position), COUNT(*) FROM events").one()
        assert tuple(streamed) == (head + 1, 800)  # the journal after the noted head
    finally:
        engine.dispose()


def test_a_snapshot_killed_half_way_resumes_where_it_stopped(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
) -> None:
    sim, proc, path = signal_mid_snapshot(
        make_simulator, write_config, nth_offers=250, signum=signal.SIGKILL
    )
    proc.communicate()
    engine = open_mirror(path)
    try:
        progress = checkpoints.read_snapshot(engine, "dreamapply")
        assert progress is not None
        assert progress.resume is not None
        stage, term, done_until = progress.resume.split(":")
        first_term = min(a.term for a in sim.journal.registry.entities("application"))
        assert stage == "application"
        assert (int(term), int(done_until)) > (first_term, 0)  # some applications are done
        sim.on_request = None
        before = len(sim.requests)
        assert main(["backfill", "-c", str(path)]) == 0
        again = sim.requests[before:]
        assert not [r for r in again if r.path.endswith("/applicants")]
        lists = [r for r in again if r.path.endswith("/applications")]
        assert lists[0].query["byAcademicTermID"] == term  # terms done are not read again
        offers_again = [r for r in again if r.path.endswith("/offers")]
        # The applications committed before the kill are not read again.
        assert offers_again
        registry = sim.journal.registry
        for request in offers_again:
            application = registry.get("application", int(request.path.split("/")[-2]))
            assert application.term >= int(term)
            if application.term == int(term):
                assert application.id > int(done_until)
        assert_current(engine, sim)
        assert checkpoints.read_snapshot(engine, "dreamapply") is None
    finally:
        engine.dispose()


def six_months_later() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=184)


def test_a_checkpoint_past_six_months_is_a_gap_resynced_from_the_lists(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
) -> None:
    sim = make_simulator(events=3000, journal_window=None)
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    # The journal moves on while edsync is away past its six months, and forgets.
    sim.journal.append(6000)
    sim.journal_window = 0.5 * DAY
    assert journal_count(sim.url) < 6000
    with freeze_time(six_months_later(), tick=True):
        assert main(["backfill", "-c", str(path)]) == 0
    engine = open_mirror(path)
    try:
        assert_current(engine, sim)
        checkpoint = checkpoints.load(engine, "dreamapply")
        assert checkpoint is not None
        assert checkpoint.gap is None
        assert checkpoint.cursor is not None
        assert checkpoint.cursor.position == len(sim.journal)
    finally:
        engine.dispose()


def test_a_stale_checkpoint_with_manual_resync_stops_the_source_and_says_why(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: Any,
) -> None:
    sim = make_simulator(events=3000, journal_window=None)
    path = write_config(sim.url, extra=SNAPSHOT + 'resync = "manual"\n')
    assert main(["backfill", "-c", str(path)]) == 0
    sim.journal.append(6000)
    with freeze_time(six_months_later(), tick=True):
        assert main(["backfill", "-c", str(path)]) == 1
        capsys.readouterr()
        assert main(["status", "-c", str(path), "--json"]) == 0
    status = capsys.readouterr().out
    assert "past the feed's retention of 183 days" in status


def test_sigterm_pauses_a_snapshot_at_a_page_and_exits_0(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: Any,
) -> None:
    _, proc, path = signal_mid_snapshot(
        make_simulator, write_config, nth_offers=150, signum=signal.SIGTERM
    )
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b'"snapshot_paused"' in stderr
    engine = open_mirror(path)
    try:
        progress = checkpoints.read_snapshot(engine, "dreamapply")
        assert progress is not None
        assert progress.resume is not None
        assert progress.resume.startswith("application:")
        checkpoint = checkpoints.load(engine, "dreamapply")
        assert checkpoint is not None
        assert checkpoint.cursor is None  # not streaming yet: the snapshot is unfinished
    finally:
        engine.dispose()
    assert main(["status", "-c", str(path), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["sources"][0]["snapshot"] == f"under way, read up to {progress.resume}"


def test_terms_above_the_cap_are_read_in_slices_of_applicants(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    monkeypatch: Any,
) -> None:
    # The real cap is 8192 a term; a small one makes the simulator's terms exceed it.
    monkeypatch.setattr(dreamapply_snapshot, "APPLICATIONS_CAP", 15)
    monkeypatch.setattr(dreamapply_snapshot, "APPLICANTS_PER_REQUEST", 4)
    sim = make_simulator(events=3000, journal_window=None)
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    sliced = [r for r in sim.requests if "byApplicantIDs" in r.query]
    assert sliced
    assert all(len(r.query["byApplicantIDs"].split(",")) <= 4 for r in sliced)
    engine = open_mirror(path)
    try:
        assert_current(engine, sim)
    finally:
        engine.dispose()
