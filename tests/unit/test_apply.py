"""The apply engine against a real mirror (SQLite and PostgreSQL): the invariants of SPEC 4."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine
from structlog.testing import capture_logs

from edsync.errors import RetriableError
from edsync.mirror import checkpoints
from edsync.mirror.apply import Applier
from edsync.mirror.erasure import erase_person
from edsync.mirror.maintenance import NUL_REASON
from edsync.mirror.sql import adapt
from edsync.model import (
    Change,
    Cursor,
    Op,
    Quarantined,
    RawJson,
    SnapshotObject,
    SnapshotPage,
    parse_json,
)
from edsync.normalize import CursorRegressionError
from edsync.sources import records as kind_records
from tests.conftest import json_value, mirror_snapshot

SOURCE = "da"


def change(
    position: int,
    entity: str = "offer",
    entity_id: str | None = "1",
    op: Op | None = "updated",
    *,
    data: dict[str, Any] | None = None,
    status: str | None = None,
    person: str | None = "7",
    revive: bool = False,
    invalid: str | None = None,
    payload: Any = None,
) -> Change | Quarantined:
    if invalid is not None:
        return Quarantined(
            event_id=str(position),
            position=position,
            type=f"event: {position}",
            entity=entity,
            payload=payload if payload is not None else {"event": position, "n": position},
            reason=invalid,
            entity_id=entity_id,
            op=op,
            occurred_at=f"2026-06-01T08:00:{position % 60:02d}+00:00",
            person_id=person,
        )
    return Change(
        event_id=str(position),
        position=position,
        type=f"event: {position}",
        entity=entity,
        entity_id=entity_id,
        op=op,
        occurred_at=f"2026-06-01T08:00:{position % 60:02d}+00:00",
        payload=payload if payload is not None else {"event": position, "n": position},
        data=data if data is not None else {"n": position},
        status=status,
        person_id=person,
        revive=revive,
    )


def cursor(position: int) -> Cursor:
    return Cursor(str(position), position)


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def applier(engine: Engine) -> Applier:
    return Applier(engine, SOURCE, "applicant", records=kind_records("dreamapply"))


def record(engine: Engine, entity: str, entity_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            adapt(
                conn,
                "SELECT data, deleted, version, last_event_id FROM records "
                "WHERE source = ? AND entity = ? AND entity_id = ?",
            ),
            (SOURCE, entity, entity_id),
        ).one()
    return {
        "data": json_value(engine.dialect.name, row[0]),
        "deleted": bool(row[1]),
        "version": row[2],
        "last_event_id": row[3],
    }


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT event_id, status FROM events").all())


def test_applying_the_same_page_twice_changes_nothing(applier: Applier, engine: Engine) -> None:
    page = [change(1, status="Offered"), change(2, status="Enrolled"), change(3, "application")]
    first = applier.apply(page, cursor(3))
    before = mirror_snapshot(engine)
    again = applier.apply(page, cursor(3))
    assert (first.applied, first.duplicates) == (3, 0)
    assert (again.applied, again.duplicates) == (0, 3)
    assert mirror_snapshot(engine) == before
    cp = checkpoints.load(engine, SOURCE)
    assert cp is not None
    assert cp.events_total == 3


def test_duplicates_within_one_page_are_recorded_once(applier: Applier, engine: Engine) -> None:
    result = applier.apply([change(1), change(1), change(2)], cursor(2))
    assert (result.applied, result.duplicates) == (2, 1)
    assert statuses(engine) == {"1": "applied", "2": "applied"}


def test_a_record_never_goes_back_to_an_older_version(applier: Applier, engine: Engine) -> None:
    applier.apply([change(11, status="Enrolled"), change(10, status="Offered")], cursor(11))
    assert record(engine, "offer", "1")["data"]["status"] == "Enrolled"
    assert record(engine, "offer", "1")["version"] == 11
    assert statuses(engine) == {"11": "applied", "10": "stale"}


def test_status_from_the_name_is_kept_by_later_events_without_one(
    applier: Applier, engine: Engine
) -> None:
    applier.apply([change(1, status="Enrolled")], cursor(1))
    applier.apply([change(2, data={"note": "x"})], cursor(2))
    assert record(engine, "offer", "1")["data"] == {"note": "x", "status": "Enrolled"}


def test_delete_keeps_a_tombstone_and_revive_brings_it_back(
    applier: Applier, engine: Engine
) -> None:
    applier.apply([change(1, "application", op="created")], cursor(1))
    applier.apply([change(2, "application", op="deleted")], cursor(2))
    closed = record(engine, "application", "1")
    assert closed["deleted"] is True
    assert closed["data"] == {"n": 2}
    applier.apply([change(3, "application", op="updated")], cursor(3))
    assert record(engine, "application", "1")["deleted"] is True
    applier.apply([change(4, "application", op="updated", revive=True)], cursor(4))
    assert record(engine, "application", "1")["deleted"] is False


def test_unknown_and_quarantined_events_reach_the_ledger_only(
    applier: Applier, engine: Engine
) -> None:
    unknown = change(1, "unknown", None, None)
    bad = change(2, invalid="event has no `event` name", payload="raw")
    result = applier.apply([unknown, bad, change(3)], cursor(3))
    assert (result.applied, result.quarantined) == (2, 1)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT event_id, entity, status, reason, payload FROM events ORDER BY position"
        ).all()
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM records").scalar_one() == 1
    assert rows[0][:4] == ("1", "unknown", "applied", "unknown event name")
    assert rows[1][2:4] == ("quarantined", "event has no `event` name")
    assert json_value(engine.dialect.name, rows[1][4]) == "raw"


def test_an_event_holding_nul_is_quarantined_with_its_payload_kept(
    applier: Applier, engine: Engine
) -> None:
    """PostgreSQL cannot store U+0000: the event must not fail its page (and
    stop the source) but reach the ledger quarantined, on both backends."""
    nul = change(1, entity_id="9", data={"name": "a\x00b"}, payload={"name": "a\x00b"})
    literal = change(2, payload={"note": "C:\\u0000"})  # the text of an escape, no NUL
    result = applier.apply([nul, literal], cursor(2))
    assert (result.applied, result.quarantined) == (1, 1)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT status, reason, payload FROM events ORDER BY position"
        ).all()
        records = conn.exec_driver_sql("SELECT entity_id FROM records").scalars().all()
    assert rows[0][:2] == ("quarantined", NUL_REASON)
    assert json_value(engine.dialect.name, rows[0][2]) == {"name": "a\ufffdb"}
    assert rows[1][0] == "applied"
    assert json_value(engine.dialect.name, rows[1][2]) == {"note": "C:\\u0000"}
    assert records == ["1"]


def test_a_feed_s_json_text_is_stored_as_sent_and_checked_like_any_payload(
    applier: Applier, engine: Engine
) -> None:
    """A journal item's text (``RawJson``) is the ledger's payload as it came,
    PHP's escapes and all; U+0000 in it is caught as in a parsed payload, and a
    number past a double's range is stored and reads back, on both backends."""
    sent = RawJson('{"note":"caf\\u00e9 \\/api\\/x","n":1}')
    nul = RawJson('{"name":"a\\u0000b"}')
    huge = RawJson('{"score":1e400}')
    events = [
        change(1, payload=sent),
        change(2, entity_id="9", payload=nul),
        change(3, invalid="event holds a value edsync cannot read", payload=huge),
    ]
    result = applier.apply(events, cursor(3))
    assert (result.applied, result.quarantined) == (1, 2)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT status, reason, payload FROM events ORDER BY position"
        ).all()
    dialect = engine.dialect.name
    if dialect == "sqlite":
        assert rows[0][2] == sent.text  # verbatim
    assert json_value(dialect, rows[0][2]) == {"note": "café /api/x", "n": 1}
    assert rows[1][:2] == ("quarantined", NUL_REASON)
    assert json_value(dialect, rows[1][2]) == {"name": "a\ufffdb"}
    assert rows[2][0] == "quarantined"
    if dialect == "sqlite":
        assert rows[2][2] == huge.text
        assert parse_json(rows[2][2]) == {"score": float("inf")}
    else:  # JSONB keeps the number exactly; it reads back as Python's int
        assert rows[2][2] == {"score": 10**400}


def test_an_erasure_rewrites_a_payload_holding_numbers_past_a_double_s_range(
    applier: Applier, engine: Engine
) -> None:
    """Read back, such a number is inf (SQLite) or a 401-digit int (JSONB):
    scrubbing the person's ledger must write either out, not fail the erasure."""
    huge = RawJson('{"id":1e400,"name":"Ann","applicant":"/api/applicants/7"}')
    applier.apply([change(1, invalid="cannot read", payload=huge)], cursor(1))
    with engine.begin() as conn:
        erase_person(conn, SOURCE, "applicant", "7", applier.typed)
    with engine.connect() as conn:
        payload = conn.exec_driver_sql("SELECT payload FROM events").scalar_one()
    scrubbed = parse_json(payload) if engine.dialect.name == "sqlite" else payload
    assert "name" not in scrubbed  # the personal data is gone
    assert scrubbed["applicant"] == "/api/applicants/7"
    # SQLite reads 1e400 as inf, which is written back as null; JSONB kept it exact.
    assert scrubbed["id"] == (None if engine.dialect.name == "sqlite" else 10**400)


def test_over_long_ids_from_a_feed_are_stored_whole_on_every_backend(
    applier: Applier, engine: Engine
) -> None:
    """PostgreSQL enforces a VARCHAR's length: a feed's over-long id or kind
    must not fail its page (and stop the source) where SQLite keeps it."""
    long_id, kind = "i" * 300, "k" * 150
    event = replace(change(1, kind, long_id, person=long_id), event_id="e" * 300)
    assert applier.apply([event], cursor(1)).applied == 1
    with engine.connect() as conn:
        ledger = conn.exec_driver_sql(
            "SELECT event_id, entity, entity_id, person_id FROM events"
        ).one()
        stored = conn.exec_driver_sql(
            "SELECT entity, entity_id, last_event_id, person_id FROM records"
        ).one()
    assert tuple(ledger) == ("e" * 300, kind, long_id, long_id)
    assert tuple(stored) == (kind, long_id, "e" * 300, long_id)


def test_a_snapshot_object_holding_nul_is_kept_with_a_replacement_and_a_warning(
    applier: Applier, engine: Engine
) -> None:
    """A snapshot object has no quarantine: failing its page would stop the
    source, and leaving it out would mark its record deleted at the end."""
    page = SnapshotPage(
        "applicant",
        [
            SnapshotObject("7", {"name": "a\x00b", "tags": ["\x00"]}, "7"),
            SnapshotObject("8", {"note": "C:\\u0000"}, "8"),  # the text of an escape
        ],
    )
    progress = checkpoints.SnapshotProgress("s1", "bootstrap", "5", 5)
    with capture_logs() as logs:
        assert applier.apply_snapshot(page, progress) == 2
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT entity_id, data, deleted FROM records ORDER BY entity_id"
        ).all()
    name = engine.dialect.name
    assert [(r[0], json_value(name, r[1]), bool(r[2])) for r in rows] == [
        ("7", {"name": "a\ufffdb", "tags": ["\ufffd"]}, False),
        ("8", {"note": "C:\\u0000"}, False),
    ]
    assert [(e["event"], e["entity_id"], e["reason"]) for e in logs] == [
        ("snapshot_object_repaired", "7", NUL_REASON)
    ]


def test_forgotten_person_is_scrubbed_from_records_and_ledger(
    applier: Applier, engine: Engine
) -> None:
    pii = {"id": 7, "email": "jane.doe@example.org", "name": "Jane Doe"}
    applier.apply(
        [
            change(1, "applicant", "7", "created", data=pii, payload={"applicant": pii}),
            change(
                2,
                "application",
                "9",
                "created",
                data={"id": 9, "applicant": pii},
                payload={"applicant": pii, "application": "/api/applications/9"},
            ),
            change(3, "applicant", "8", "created", person="8", data={"email": "other@x.org"}),
            # Not in the forgetting page: its data and typed values are rewritten
            # by the erasure (the file name is a typed column of documents).
            change(4, "document", "3", "created", data={"name": "jane-doe-passport.pdf"}),
        ],
        cursor(4),
    )
    applier.apply(
        [
            change(
                5,
                "applicant",
                "7",
                "forgotten",
                data={"applicant": "/api/applicants/7"},
                payload={"event": "Applicant requested to be forgotten"},
            )
        ],
        cursor(5),
    )
    # An event naming the forgotten person afterwards is scrubbed on arrival.
    applier.apply(
        [
            change(
                6,
                "application",
                "9",
                "updated",
                data={"id": 9, "applicant": pii},
                payload={"applicant": pii},
            )
        ],
        cursor(6),
    )
    dump = repr(mirror_snapshot(engine))
    assert "jane.doe@example.org" not in dump
    assert "Jane Doe" not in dump
    assert "passport" not in dump
    assert "other@x.org" in dump
    applicant = record(engine, "applicant", "7")
    assert applicant["data"]["forgotten"] is True
    assert applicant["data"]["id"] == 7
    assert applicant["deleted"] is True
    assert record(engine, "application", "9")["data"]["applicant"] == {"id": 7}
    assert "/api/applications/9" in dump


def test_a_failing_page_commits_nothing(applier: Applier, engine: Engine) -> None:
    applier.apply([change(1)], cursor(1))
    before = mirror_snapshot(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'disk on fire' USING ERRCODE = 'disk_full'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON records FOR EACH ROW "
                "WHEN (NEW.entity = 'boom') EXECUTE FUNCTION boom()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.entity = 'boom' "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
    with pytest.raises(RetriableError, match="disk on fire"):
        applier.apply([change(2), change(3, "boom")], cursor(3))
    assert mirror_snapshot(engine) == before
    cp = checkpoints.load(engine, SOURCE)
    assert cp is not None
    assert cp.cursor == cursor(1)


def test_the_cursor_never_moves_backwards(applier: Applier, engine: Engine) -> None:
    applier.apply([change(5)], cursor(5))
    with pytest.raises(CursorRegressionError):
        applier.apply([change(3)], cursor(3))
    assert statuses(engine) == {"5": "applied"}


def test_signals_once_per_event_and_none_for_stale_or_quarantined(engine: Engine) -> None:
    from edsync.rules import EventPattern, Rule

    rule = Rule(
        name="any-offer",
        source=SOURCE,
        event=EventPattern.parse("event: ?"),
        entity="offer",
        op=None,
        where=(),
        publish=("hub", "hook"),
        event_type="offer",
        member=None,
    )
    applier = Applier(engine, SOURCE, "applicant", [rule], records=kind_records("dreamapply"))
    page = [
        change(11),  # applied: raises
        change(10),  # stale (older than 11 for the same record): none
        change(12, invalid="broken"),  # quarantined: none
        change(13, "application"),  # another entity: none
    ]
    applier.apply(page, cursor(13))
    applier.apply(page, cursor(13))  # a replay raises nothing new

    with engine.connect() as conn:
        signals = conn.exec_driver_sql("SELECT rule, event_id FROM signals").all()
        deliveries = conn.exec_driver_sql(
            "SELECT sink, status, attempts FROM deliveries ORDER BY sink"
        ).all()
    assert signals == [("any-offer", "11")]
    assert deliveries == [("hook", "pending", 0), ("hub", "pending", 0)]
