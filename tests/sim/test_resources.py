"""The simulator's resources without HTTP (issue 30): registered children with
ids of their own, purges without a journal event, and the oracle
``Journal.current()`` a mirror is compared with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from edsync_sim.dataset import (
    CHILD_KINDS,
    FIRST_IDS,
    RECORD_KINDS,
    Journal,
    _Generator,
)


@pytest.fixture(scope="module")
def journal() -> Journal:
    return Journal(6000, seed=11)


def plain(journal: Journal) -> list[dict[str, Any]]:
    fragments = journal.fragments(frozenset(), range(len(journal)))
    body = orjson.loads(b"{" + b",".join(fragments) + b"}")
    return [body[str(i)] for i in range(1, len(journal) + 1)]


def test_children_are_registered_under_their_application(journal: Journal) -> None:
    registry = journal.registry
    for kind in CHILD_KINDS:
        entities = registry.entities(kind)
        assert entities, kind
        assert [e.id for e in entities] == list(
            range(FIRST_IDS[kind], FIRST_IDS[kind] + len(entities))
        )
        assert journal.ids(kind) == {e.id for e in entities}
        for entity in entities:
            owner = entity.owner
            if owner is None:  # only an invoice, detached by a purge
                assert kind == "invoice"
                continue
            assert owner.kind == "application"
            listed = entity in owner.members(kind)
            assert listed != entity.removed
    several = [a for a in registry.entities("application") if len(a.members("task")) >= 2]
    assert several, "some applications should have several tasks"
    assert max(len(a.members("task")) for a in registry.entities("application")) <= 3


def test_current_lists_every_live_resource_with_its_parent(journal: Journal) -> None:
    state = journal.current()
    assert {kind for kind, _ in state.records} == set(RECORD_KINDS)
    registry = journal.registry
    for (kind, id_), data in state.records.items():
        entity = registry.get(kind, id_)
        assert entity is not None
        assert entity.live
        assert data["id"] == id_
        if kind in CHILD_KINDS and entity.owner is not None:
            assert state.parents[(kind, id_)] == entity.owner.id
    for (kind, id_), application in state.parents.items():
        assert (kind, id_) in state.records
        if kind != "invoice":  # a closed application's invoices stay
            assert ("application", application) in state.records
    for kind in RECORD_KINDS:
        live = {e.id for e in registry.entities(kind) if e.live}
        assert live == {i for k, i in state.records if k == kind}, kind


def test_task_events_carry_no_task_and_change_its_status(journal: Journal) -> None:
    for event in plain(journal):
        if event["event"].startswith("Task was"):
            assert event.keys() == {"logged", "event", "bind", "applicant", "application"}
    statuses = {task.data()["status"] for task in journal.registry.entities("task")}
    assert statuses & {"Done", "Approved", "Completed"}
    assert statuses & {"Pending", "Submitted", "In review"}


def test_a_deleted_applicants_invoices_are_detached(journal: Journal) -> None:
    registry = journal.registry
    deleted = [p.entity for p in registry.purges.values() if p.entity.kind == "applicant"]
    detached = [i for i in registry.entities("invoice") if i.owner is None]
    assert detached
    for invoice in detached:
        data = invoice.data()
        assert (data["applicant"], data["application"]) == (None, None)
        assert data["payer"] == {"name": None, "email": None}
    owners = {a.id for person in deleted for a in person.members("application")}
    for invoice in registry.entities("invoice"):
        data = invoice.data()
        if data["application"] is not None:
            assert int(str(data["application"]).rsplit("/", 1)[1]) not in owners


def test_purges_without_events_are_deterministic() -> None:
    first = Journal(2000, seed=3)
    second = Journal(2000, seed=3)
    for journal in (first, second):
        assert journal.purge_term(1)
        journal.append(1500)
        applicant = next(a.id for a in journal.registry.entities("applicant") if a.live)
        assert journal.confirm_forget(applicant)
        journal.append(500)
    assert first.current() == second.current()
    assert first.fragments(frozenset({"application"}), range(4000)) == second.fragments(
        frozenset({"application"}), range(4000)
    )


def test_a_term_purge_ends_the_stories_it_touches() -> None:
    journal = Journal(1500, seed=3)
    purged = journal.purge_term(1)
    names = {f"/api/applications/{i}" for i in purged}
    count = len(journal)
    journal.append(3000)
    later = plain(journal)[count:]
    assert not [e for e in later if e.get("application") in names]
    assert journal.current().purged.keys() >= {("application", i) for i in purged}


def test_confirm_forget_without_a_request() -> None:
    journal = Journal(800, seed=2)
    applicant = next(a for a in journal.registry.entities("applicant") if a.live)
    assert applicant.id not in journal.current().forget_requests
    assert journal.confirm_forget(applicant.id)
    purge = applicant.purge
    assert purge is not None
    assert (purge.reason, purge.requested) == ("forgotten", purge.purged)
    assert not journal.confirm_forget(applicant.id)
    assert not journal.confirm_forget(1)  # never existed


def test_requests_are_confirmed_some_hundreds_of_events_later() -> None:
    journal = Journal(20_000, seed=0)
    requests = [
        (position, event["applicant"])
        for position, event in enumerate(plain(journal))
        if event["event"] == "Applicant requested to be forgotten"
    ]
    state = journal.current()
    assert state.forget_requests
    for position, link in requests:
        id_ = int(link.rsplit("/", 1)[1])
        if id_ in state.forget_requests:
            assert position >= 20_000 - 3000  # still under review
        else:
            assert state.purged[("applicant", id_)] == "forgotten"
            assert position < 20_000 - 300


def test_logged_times_are_isoformat() -> None:
    generator = _Generator(0, datetime(2026, 1, 1, tzinfo=UTC))
    for moment in (0, 59, 3600, 86399, 86400, 1_780_000_000, 1_780_012_345, 4_102_444_799):
        generator.now = moment
        assert generator._logged_now() == datetime.fromtimestamp(moment, UTC).isoformat()


def test_ids_of_unknown_kinds_are_refused(journal: Journal) -> None:
    assert journal.ids("media")
    with pytest.raises(ValueError, match="no such entity kind"):
        journal.ids("referee")
