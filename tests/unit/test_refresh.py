"""A notification feed's records (SPEC 2.1) against a real mirror (SQLite and
PostgreSQL): pages queue what their events name, the same poll reads each
resource once and writes its records keyed by their own ids, deletions
upstream (a read answering gone, a purge) scrub, a forget request waits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from edsync.mirror import checkpoints
from edsync.mirror.sql import adapt
from edsync.model import Ref, Refreshed
from edsync.run.drain import drain
from edsync.run.refresh import purge_due
from edsync.testing import MemoryRefresher, MemorySource
from tests.conftest import json_value

SOURCE = "da"
APPLICANT = {"id": 7, "email": "ada@example.org", "name": {"given": "Ada"}}
APPLICATION = {"id": 21, "status": "Submitted", "notes": "called about the visa"}
TASKS = [("1", {"id": 1, "status": "Pending"}), ("5", {"id": 5, "status": "Done"})]


def event(
    name: str, *, refresh: list[list[str]], op: str = "updated", **more: Any
) -> dict[str, Any]:
    """A notification: ledgered, writes no record, names what to read."""
    return {
        "entity": more.pop("entity", "application"),
        "op": op,
        "entity_id": more.pop("entity_id", None),
        "type": name,
        "person_id": "7",
        "record": False,
        "refresh": refresh,
        **more,
    }


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def upstream() -> MemoryRefresher:
    resources = MemoryRefresher(outlives_person=("invoice",))
    resources.put("applicant", "7", APPLICANT, "7")
    resources.put("application", "21", APPLICATION, "7", {"task": TASKS, "offer": []})
    resources.put("invoice", "9", {"id": 9, "payer": "Ada Lovelace", "amount": "50.00"}, "7")
    return resources


def feed(upstream: MemoryRefresher, *events: dict[str, Any]) -> MemorySource:
    return MemorySource(SOURCE, list(events), person_entity="applicant", resources=upstream)


def records(engine: Engine, entity: str | None = None) -> dict[tuple[str, str], tuple[Any, bool]]:
    where = "" if entity is None else f" AND entity = '{entity}'"
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(
                conn,
                f"SELECT entity, entity_id, data, deleted FROM records WHERE source = ?{where}",
            ),
            (SOURCE,),
        ).all()
    return {(e, i): (json_value(engine.dialect.name, d), bool(x)) for e, i, d, x in rows}


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql(sql).all())


def test_each_named_resource_is_read_once_and_its_children_keep_their_own_ids(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    source = feed(
        upstream,
        event('Task was committed as: "Pending"', refresh=[["application", "21"]]),
        event('Task was resolved as: "Done"', refresh=[["application", "21"]]),
        event("Applicant email was changed", refresh=[["applicant", "7"]], entity="applicant"),
    )
    result = drain(engine, source)
    # Two events named application 21: one read.
    assert upstream.reads == [Ref("application", "21", "7"), Ref("applicant", "7", "7")]
    assert result.refreshed == 2
    found = records(engine)
    # Two tasks of one application are two records, each with its own status.
    assert found[("task", "1")] == ({"id": 1, "status": "Pending"}, False)
    assert found[("task", "5")] == ({"id": 5, "status": "Done"}, False)
    assert found[("application", "21")] == (APPLICATION, False)
    assert found[("applicant", "7")] == (APPLICANT, False)
    assert ("task", "21") not in found  # never keyed by the application's id
    assert rows(engine, "SELECT COUNT(*) FROM refresh_queue") == [(0,)]
    # The ledger keeps every item; no entity id is borrowed.
    assert rows(engine, "SELECT entity_id FROM events WHERE entity = 'application'") == [
        (None,),
        (None,),
    ]


def test_a_child_that_left_its_collection_is_marked_deleted(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    source = feed(upstream, event("Application was edited", refresh=[["application", "21"]]))
    drain(engine, source)
    upstream.put("application", "21", APPLICATION, "7", {"task": TASKS[1:], "offer": []})
    source.events.append(event("Task was commented", refresh=[["application", "21"]]))
    drain(engine, source)
    assert records(engine, "task") == {
        ("task", "1"): ({"id": 1, "status": "Pending"}, True),
        ("task", "5"): ({"id": 5, "status": "Done"}, False),
    }


def test_a_stub_never_replaces_what_the_resource_holds(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    """An unexpanded event's links are not the applicant: the read is."""
    source = feed(
        upstream,
        event(
            "Applicant email was changed",
            refresh=[["applicant", "7"]],
            entity="applicant",
            data={"applicant": "/api/v9/applicants/7"},
        ),
    )
    drain(engine, source)
    assert records(engine, "applicant") == {("applicant", "7"): (APPLICANT, False)}


def test_the_queue_survives_a_failed_read_and_the_next_poll_drains_it(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    class Down(MemoryRefresher):
        def refresh(self, refs: Any) -> Any:
            from edsync.errors import RetriableError

            raise RetriableError("upstream down")

    down = Down(resources=upstream.resources)
    source = feed(down, event("Application was edited", refresh=[["application", "21"]]))
    from edsync.errors import RetriableError

    with pytest.raises(RetriableError):
        drain(engine, source)
    # The page committed with its queue row: nothing is lost.
    assert rows(engine, "SELECT entity, entity_id, position FROM refresh_queue") == [
        ("application", "21", 1)
    ]
    source.refresher = upstream
    drain(engine, source)
    assert records(engine, "application")[("application", "21")][1] is False
    assert rows(engine, "SELECT COUNT(*) FROM refresh_queue") == [(0,)]


def test_a_forget_request_is_shown_and_erases_nothing_until_upstream_deletes(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    source = feed(
        upstream,
        event("Application was submitted", refresh=[["application", "21"]]),
        event("Invoice was issued", refresh=[["invoice", "9"]], entity="invoice"),
        event(
            "Applicant requested to be forgotten",
            refresh=[["applicant", "7"]],
            entity="applicant",
            entity_id="7",
            op="forgotten",
            occurred_at="2026-06-01T08:00:00+00:00",
        ),
    )
    drain(engine, source)
    applicant, deleted = records(engine, "applicant")[("applicant", "7")]
    assert applicant["email"] == "ada@example.org"  # nothing erased yet
    assert applicant["forget_requested"] == "2026-06-01T08:00:00+00:00"
    assert not deleted
    assert records(engine, "application")[("application", "21")][0] == APPLICATION
    # The administrator confirms: DreamApply deletes, a read answers gone.
    upstream.remove("applicant", "7")
    upstream.remove("application", "21")
    source.events.append(
        event("Applicant email was changed", refresh=[["applicant", "7"]], entity="applicant")
    )
    drain(engine, source)
    found = records(engine)
    data, deleted = found[("applicant", "7")]
    assert deleted
    assert "ada@example.org" not in str(data)
    assert "Ada" not in str(data)
    # The invoice stays, detached from the person: scrubbed, not deleted.
    invoice, invoice_deleted = found[("invoice", "9")]
    assert invoice["id"] == 9
    assert "Ada Lovelace" not in str(invoice)
    assert not invoice_deleted


def test_a_purge_without_an_event_scrubs_every_text_column(
    engine: Engine, upstream: MemoryRefresher
) -> None:
    upstream.purge_interval = 3600.0
    source = feed(
        upstream,
        event("Application was submitted", refresh=[["application", "21"]]),
    )
    drain(engine, source)
    assert records(engine, "application")[("application", "21")][0]["notes"]
    # The term is purged overnight: no journal event, only the purge list says so.
    upstream.remove("application", "21")
    upstream.purges = [[Refreshed(Ref("application", "21"), gone=True)]]
    with engine.begin() as conn:  # the last purge read was over an hour ago
        conn.exec_driver_sql(
            adapt(conn, "UPDATE checkpoints SET purged_at = ? WHERE source = ?"),
            ("2026-01-01T00:00:00+00:00", SOURCE),
        )
    result = drain(engine, source)
    assert result.purged == 1
    found = records(engine)
    application, deleted = found[("application", "21")]
    assert deleted
    assert application == {"id": 21, "purged": True, "forgotten": False}
    for key in (("task", "1"), ("task", "5")):
        data, child_deleted = found[key]
        assert child_deleted
        assert all(not isinstance(v, str) or v == "Pending" or v == "Done" for v in data.values())
    # Read again an hour later: already purged, nothing rewritten.
    assert drain(engine, source).purged == 0


def test_purges_are_read_only_when_due() -> None:
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    assert purge_due(None, now, 3600.0)
    assert not purge_due(now - dt.timedelta(minutes=59), now, 3600.0)
    assert purge_due(now - dt.timedelta(hours=1), now, 3600.0)
    assert not purge_due(None, now, None)


def test_a_purge_read_is_recorded(engine: Engine, upstream: MemoryRefresher) -> None:
    upstream.purge_interval = 3600.0
    drain(engine, feed(upstream, event("x", refresh=[["application", "21"]])))
    assert checkpoints.purged_at(engine, SOURCE) is not None
