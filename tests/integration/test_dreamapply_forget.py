"""A forget (SPEC 5.4): the journal's request erases nothing, DreamApply's
deletion (a purged-resources entry read in steady state, with no journal
event) then leaves nothing personal about the person in any table: every text
column of every row is searched, quarantined ledger rows and snapshotted
offers included."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from freezegun import freeze_time
from sqlalchemy import Engine, inspect, text

from edsync.cli import main
from edsync.config import load_config
from edsync.mirror.db import create_mirror_engine
from edsync.settings import MirrorSettings
from edsync_sim.dataset import Entity

SNAPSHOT = 'snapshot = true\nexpand = ["applicant", "application", "offer"]\n'


def open_mirror(path: Path) -> Engine:
    return create_mirror_engine(MirrorSettings(url=load_config(path).mirror.url))


def chosen_person(sim: Any) -> Entity:
    """A live applicant with an offer, so their data reaches every kind of record."""
    for application in sim.journal.registry.entities("application"):
        owner = application.owner
        if application.live and application.children and owner is not None and owner.live:
            assert isinstance(owner, Entity)
            return owner
    raise AssertionError("the dataset should have a live applicant with an offer")


def personal_strings(person: Entity) -> list[str]:
    data = person.data()
    name = data["name"]
    assert isinstance(name, dict)
    return [str(data["email"]), str(data["phone"]), str(name["full"])]


def rows_holding(engine: Engine, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text or JSON value that contains a needle."""
    found = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            result = conn.exec_driver_sql(f"SELECT * FROM {table}")
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | int | float | bool) or value is None:
                        continue
                    text = value if isinstance(value, str) else orjson.dumps(value).decode()
                    found += [(table, column, n) for n in needles if n in text]
    return found


def quarantine_naming(sim: Any, person: Entity) -> None:
    """An event about the person that cannot be normalized (a bad ``logged``),
    expanded so the ledger keeps their personal data raw."""
    application = next(a for a in (person.children or ()) if a.live)
    sim.journal.append_raw(
        {
            "logged": "yesterday",
            "event": "Application was edited",
            "bind": [],
            "applicant": orjson.loads(person.json()),
            "application": application.link,
        }
    )


def assert_setup_holds_their_data(engine: Engine, person: Entity, needles: list[str]) -> None:
    tables = {(table, column) for table, column, _ in rows_holding(engine, needles)}
    assert ("records", "data") in tables
    assert ("events", "payload") in tables
    with engine.connect() as conn:
        # Snapshotted offers (no applicant link upstream) are theirs, free text and all.
        offers = conn.execute(
            text("SELECT data FROM records WHERE entity = 'offer' AND person_id = :id"),
            {"id": str(person.id)},
        ).all()
        # The quarantined event still names them.
        quarantined = conn.execute(
            text("SELECT person_id FROM events WHERE status = 'quarantined'")
        ).all()
    assert offers
    assert any(
        needles[0] in (o if isinstance(o, str) else orjson.dumps(o).decode()) for (o,) in offers
    )
    assert [row[0] for row in quarantined] == [str(person.id)]


def purges_read_later(path: Path) -> None:
    """A backfill two hours on: past ``purge_interval`` (1 h), so purged-resources
    is read again, as the daemon does in steady state."""
    with freeze_time(dt.datetime.now(dt.UTC) + dt.timedelta(hours=2), tick=True):
        assert main(["backfill", "-c", str(path)]) == 0


def test_a_forget_request_erases_nothing_until_dreamapply_deletes_them(
    make_simulator: Callable[..., Any],
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(events=1500, seed=3, journal_window=None)
    person = chosen_person(sim)
    needles = personal_strings(person)
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    quarantine_naming(sim, person)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = open_mirror(path)
    try:
        assert_setup_holds_their_data(engine, person, needles)
        sim.journal.append_raw(
            {
                "logged": "2030-01-01T00:00:00+00:00",
                "event": "Applicant requested to be forgotten",
                "bind": [],
                "applicant": person.link,
            }
        )
        assert main(["backfill", "-c", str(path)]) == 0
        # A request an administrator reviews (and may revert): nothing erased,
        # the request shown.
        assert_setup_holds_their_data(engine, person, needles)
        capsys.readouterr()
        assert main(["status", "-c", str(path), "--json"]) == 0
        [source] = orjson.loads(capsys.readouterr().out)["sources"]
        assert source["forget_requested"] == 1
        with engine.connect() as conn:
            requested = conn.execute(
                text("SELECT forget_requested FROM dreamapply_applicants WHERE id = :id"),
                {"id": str(person.id)},
            ).scalar_one()
        assert requested is not None
        # The administrator confirms: DreamApply deletes them, no journal event.
        assert sim.journal.confirm_forget(person.id)
        purges_read_later(path)
        assert rows_holding(engine, needles) == []
    finally:
        engine.dispose()


def test_a_purged_entry_asking_to_be_forgotten_erases_them_everywhere(
    make_simulator: Callable[..., Any], write_config: Callable[..., Path]
) -> None:
    sim = make_simulator(events=1500, seed=3, journal_window=None)
    person = chosen_person(sim)
    needles = personal_strings(person)
    path = write_config(sim.url, extra=SNAPSHOT)
    assert main(["backfill", "-c", str(path)]) == 0
    quarantine_naming(sim, person)
    assert main(["backfill", "-c", str(path)]) == 0
    engine = open_mirror(path)
    try:
        assert_setup_holds_their_data(engine, person, needles)
        # Upstream erases them with no journal event the mirror sees; the
        # purged-resources list says so, read every purge_interval.
        assert sim.journal.confirm_forget(person.id)
        purges_read_later(path)
        assert rows_holding(engine, needles) == []
        with engine.connect() as conn:
            deleted = conn.execute(
                text("SELECT deleted FROM records WHERE entity = 'applicant' AND entity_id = :id"),
                {"id": str(person.id)},
            ).scalar_one()
        assert deleted
    finally:
        engine.dispose()
