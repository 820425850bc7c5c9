"""DreamApply read as the vendor means it (SPEC 2.1), end to end over real HTTP
against the simulator: records come from each resource's own endpoint, keyed
by the vendor's ids; purges with no journal event and forget requests reach
the mirror when DreamApply carries them out; every request is paced."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from edsync import sources
from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine, ensure_schema
from edsync.mirror.sql import adapt
from edsync.run.drain import drain
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from tests.conftest import json_value

SOURCE = "dreamapply"
KINDS = ("applicant", "application", "offer", "task", "reference", "document", "invoice")


def records(engine: Engine) -> dict[tuple[str, str], tuple[dict[str, Any], bool, str | None]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(
                conn,
                "SELECT entity, entity_id, data, deleted, parent_id FROM records WHERE source = ?",
            ),
            (SOURCE,),
        ).all()
    dialect = engine.dialect.name
    return {(e, i): (json_value(dialect, d), bool(x), p) for e, i, d, x, p in rows}


def mirror(path: Path) -> Engine:
    engine = create_mirror_engine(load_config(path).mirror)
    ensure_schema(engine, auto_migrate=True)
    return engine


def backfill(path: Path) -> None:
    assert main(["backfill", "-c", str(path), "--no-deliver"]) == 0


def purges_due(engine: Engine) -> None:
    """As if the purges were last read two hours ago (``purge_interval``: 1 h)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            adapt(conn, "UPDATE checkpoints SET purged_at = ? WHERE source = ?"),
            ((dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(), SOURCE),
        )


def live(engine: Engine) -> set[tuple[str, int]]:
    return {(e, int(i)) for (e, i), (_, deleted, _) in records(engine).items() if not deleted}


def test_every_record_is_keyed_by_its_own_id_and_matches_upstream(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    """A snapshot, then the journal and the refresh: the mirror holds exactly
    what the endpoints serve, each record under the id the simulator gave that
    entity, each child under the application it belongs to."""
    sim = make_simulator(events=2500)
    path = write_config(sim.url, extra="snapshot = true\n")
    backfill(path)  # the snapshot, then nothing new
    sim.journal.append(1500)  # the institution keeps working
    backfill(path)
    engine = mirror(path)
    purges_due(engine)  # forget requests confirmed meanwhile: purges with no event
    backfill(path)
    found = records(engine)
    kinds = {entity for entity, _ in found}
    assert kinds <= set(KINDS)
    for entity, entity_id in found:
        # Never another entity's id: every key is one the simulator issued to that kind.
        assert int(entity_id) in sim.journal.ids(entity), (entity, entity_id)
    current = sim.journal.current()
    assert live(engine) == set(current.records)
    for key, application in current.parents.items():
        assert found[(key[0], str(key[1]))][2] == str(application), key
    # Two tasks of one application are two records, each with its own status.
    tasks: dict[str, list[str]] = {}
    for (entity, _), (data, deleted, parent) in found.items():
        if entity == "task" and not deleted and parent is not None:
            tasks.setdefault(parent, []).append(str(data["status"]))
    assert any(len(set(statuses)) > 1 for statuses in tasks.values())
    # Every request went to the version these rules follow.
    dreamapply = [r.path for r in sim.requests if not r.path.startswith(("/api/v2/", "/events"))]
    assert dreamapply
    assert all(p.startswith("/api/v9/") for p in dreamapply), set(dreamapply)


def test_an_applicant_event_without_expand_keeps_the_applicant_data(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    """``expand`` off (the default): "Applicant email was changed" carries a
    link, and the record is the applicant as its endpoint answers, not the link."""
    sim = make_simulator(events=1500)
    path = write_config(sim.url, extra="snapshot = true\n")
    backfill(path)
    sim.journal.append(3000)
    backfill(path)
    engine = mirror(path)
    found = records(engine)
    current = sim.journal.current()
    changed = [
        key
        for key, data in current.records.items()
        if key[0] == "applicant" and "@mail.example.org" in str(data.get("email"))
    ]
    assert changed, "the journal changed some applicant's email"
    for entity, id_ in changed:
        data, deleted, _ = found[(entity, str(id_))]
        assert not deleted
        assert data["email"] == current.records[(entity, id_)]["email"]
        assert data["name"] == current.records[(entity, id_)]["name"]


def test_a_term_purged_without_an_event_is_scrubbed_on_the_next_purge_read(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=2000)
    path = write_config(sim.url, extra='snapshot = true\npurge_interval = "1h"\n')
    backfill(path)
    engine = mirror(path)
    before = records(engine)
    application, term = next(
        (int(i), int(str(data["academic_term"]).rsplit("/", 1)[1]))
        for (e, i), (data, deleted, _) in before.items()
        if e == "application" and not deleted
    )
    purged = set(sim.journal.purge_term(term))
    assert application in purged
    backfill(path)  # within the hour: the purges are not read again yet
    assert not records(engine)[("application", str(application))][1]
    purges_due(engine)  # an hour later
    backfill(path)
    after = records(engine)
    for app in purged:
        data, deleted, _ = after[("application", str(app))]
        assert deleted
        assert data == {"id": app, "purged": True, "forgotten": False}
    children = [(k, v) for k, v in after.items() if v[2] is not None and int(v[2]) in purged]
    # DreamApply keeps invoices: they stay, resources of their own.
    assert all(not deleted for (entity, _), (_, deleted, _) in children if entity == "invoice")
    children = [(k, v) for k, v in children if k[0] != "invoice"]
    assert children
    for key, (data, deleted, _) in children:
        assert deleted, key
        # Scrubbed: no text is left but links and the status, which names no one.
        texts = [v for f, v in data.items() if isinstance(v, str) and f != "status"]
        assert all(v.startswith("/api/") for v in texts), (key, data)


def test_a_forget_request_erases_nothing_until_dreamapply_deletes_the_applicant(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=2500)
    path = write_config(sim.url, extra='snapshot = false\npurge_interval = "1h"\n')
    backfill(path)
    engine = mirror(path)
    pending = sim.journal.current().forget_requests
    assert pending, "the journal holds a forget request not yet confirmed"
    applicant = next(iter(pending))
    data, deleted, _ = records(engine)[("applicant", str(applicant))]
    assert not deleted
    assert data["email"]  # nothing erased yet
    assert data["forget_requested"]
    assert sim.journal.confirm_forget(applicant)
    purges_due(engine)
    backfill(path)
    data, deleted, _ = records(engine)[("applicant", str(applicant))]
    assert deleted
    assert data == {"id": applicant, "purged": True, "forgotten": True}
    with engine.connect() as conn:
        payloads = conn.exec_driver_sql(
            adapt(conn, "SELECT payload FROM events WHERE source = ? AND person_id = ?"),
            (SOURCE, str(applicant)),
        ).all()
    assert payloads
    assert not any("example.org" in str(row[0]) for row in payloads)


class FakeTime:
    """Virtual time for the pacer: sleeping advances it; every start is kept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.starts: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


@pytest.mark.sqlite_only
def test_a_paced_snapshot_journal_and_refresh_never_exceed_the_quota_in_any_minute(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path], backend: str
) -> None:
    sim = make_simulator(events=600)
    path = write_config(sim.url, extra="snapshot = true\n")
    settings = load_config(path).sources[SOURCE]
    assert isinstance(settings, Settings)
    source = sources.create(settings)
    assert isinstance(source, DreamApplySource)
    time = FakeTime()
    pacer = type(source.http.pacer)(180, clock=time.clock, sleep=time.sleep)
    source.http.pacer = pacer
    acquire = pacer.acquire

    def counted() -> float:
        slept = acquire()
        time.starts.append(time.clock())
        return slept

    pacer.acquire = counted  # type: ignore[method-assign]
    source._resources.batch = False  # a read per resource: more than a minute's quota
    engine = mirror(path)
    drain(engine, source)  # the snapshot
    sim.journal.append(2000)  # then the journal, and the refresh of what it names
    result = drain(engine, source)
    source.close()
    assert result.refreshed > 0
    starts = sorted(time.starts)
    assert len(starts) == len(sim.requests) > 180
    busiest = max(sum(1 for s in starts[i:] if s < start + 60) for i, start in enumerate(starts))
    assert busiest == 180  # the quota, used in full and never exceeded
