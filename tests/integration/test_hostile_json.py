"""Valid JSON a fast parser refuses is read; one item no parser reads is
isolated and quarantined, never retried forever (issue 36, point 3; SPEC 5.3).

Real servers on 127.0.0.1 (``tests/hostile_json_servers.py``): the fault
server's DreamApply journal serving some items as raw text, and a small
Edlink. A lone surrogate escape (``"Zo\\ud83d"``) is what ``JSON.stringify``
writes for a name cut inside an emoji; 50 000 levels of nesting are past
every parser's depth, and the scan that says so must still tell them from a
page cut short (that one stays a retried malformed page).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from edsync.cli import main
from edsync.mirror import checkpoints
from edsync.mirror.sql import adapt
from edsync.model import parse_json
from tests.conftest import DREAMAPPLY_KEY, EDLINK_TOKEN, json_value, mirror_engine
from tests.faultserver import Truncated, make_events, resources
from tests.hostile_json_servers import (
    DEPTH,
    LONE_SURROGATE,
    RawEdlink,
    RawJournal,
    nested,
    with_field,
)

EVENTS = 40
DEEP_ID = 17
EVENTS_PATH = "/api/v2/graph/events"


@pytest.fixture
def edlink() -> Iterator[RawEdlink]:
    with RawEdlink(EDLINK_TOKEN) as server:
        yield server


@pytest.fixture
def journals() -> Iterator[Callable[..., RawJournal]]:
    started: list[RawJournal] = []

    def serve(events: dict[int, Any], texts: dict[int, str], **kwargs: Any) -> RawJournal:
        server = RawJournal(events, texts=texts, api_key=DREAMAPPLY_KEY, **kwargs).start()
        started.append(server)
        return server

    yield serve
    for server in started:
        server.stop()


def backfill(path: Path) -> int:
    return main(["backfill", "-c", str(path)])


def ledger(engine: Engine, source: str) -> dict[str, tuple[str, str | None, Any]]:
    """Each ledger row by event id: status, reason, payload."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            adapt(conn, "SELECT event_id, status, reason, payload FROM events WHERE source = ?"),
            (source,),
        ).all()
    # The ledger keeps a lone surrogate escape as sent (SQLite): orjson alone refuses it.
    read = parse_json if engine.dialect.name == "sqlite" else (lambda value: value)
    return {row[0]: (row[1], row[2], read(row[3])) for row in rows}


def payload_text(engine: Engine, event_id: str) -> str:
    """A ledger row's payload as the database holds its text."""
    column = "payload" if engine.dialect.name == "sqlite" else "payload::text"
    with engine.connect() as conn:
        statement = f"SELECT {column} FROM events WHERE event_id = ?"
        return str(conn.exec_driver_sql(adapt(conn, statement), (event_id,)).scalar_one())


def records(engine: Engine, source: str, entity: str) -> dict[str, Any]:
    with engine.connect() as conn:
        statement = "SELECT entity_id, data FROM records WHERE source = ? AND entity = ?"
        rows = conn.exec_driver_sql(adapt(conn, statement), (source, entity)).all()
    return {row[0]: json_value(engine.dialect.name, row[1]) for row in rows}


def cursor(engine: Engine, source: str) -> tuple[str, int] | None:
    checkpoint = checkpoints.load(engine, source)
    if checkpoint is None or checkpoint.cursor is None:
        return None
    return checkpoint.cursor.value, checkpoint.cursor.position


# -- Edlink: a lone surrogate ------------------------------------------------------------


def person(person_id: str, first_name: str) -> str:
    """A Graph person's JSON text, ``first_name`` a JSON string's text as is."""
    return with_field({"id": person_id, "last_name": "Example"}, "first_name", first_name)


def event(event_id: str, op: str, data: str, target_id: str) -> str:
    """A v2 person event's JSON text around ``data`` (JSON text as is)."""
    body = {
        "id": event_id,
        "date": "2026-06-01T08:00:00Z",
        "type": op,
        "target": "person",
        "target_id": target_id,
    }
    return with_field(body, "data", data)


def test_a_graph_list_with_a_lone_surrogate_in_a_name_bootstraps(
    edlink: RawEdlink, edlink_config: Callable[..., Path], fast_retries: None
) -> None:
    ann, zoe = str(uuid.uuid4()), str(uuid.uuid4())
    edlink.lists["people"] = [person(ann, '"Ann"'), person(zoe, f'"{LONE_SURROGATE}"')]
    path = edlink_config(edlink.url)

    assert backfill(path) == 0

    people = records(mirror_engine(path), "edlink", "person")
    assert people[ann]["first_name"] == "Ann"
    assert people[zoe]["first_name"] == "Zo\ufffd"
    assert people.keys() == {ann, zoe}


def test_an_event_with_a_lone_surrogate_in_its_data_is_applied(
    edlink: RawEdlink, edlink_config: Callable[..., Path], fast_retries: None
) -> None:
    ann, zoe = str(uuid.uuid4()), str(uuid.uuid4())
    edlink.lists["people"] = [person(ann, '"Ann"')]
    path = edlink_config(edlink.url)
    assert backfill(path) == 0  # the bootstrap: no events yet
    created, updated = str(uuid.uuid4()), str(uuid.uuid4())
    edlink.events += [
        (created, event(created, "created", person(zoe, f'"{LONE_SURROGATE}"'), zoe)),
        (updated, event(updated, "updated", person(ann, '"Anne"'), ann)),
    ]

    assert backfill(path) == 0

    engine = mirror_engine(path)
    people = records(engine, "edlink", "person")
    assert people[zoe]["first_name"] == "Zo\ufffd"
    assert people[ann]["first_name"] == "Anne"
    rows = ledger(engine, "edlink")
    assert {k: v[0] for k, v in rows.items()} == {created: "applied", updated: "applied"}
    assert cursor(engine, "edlink") == (updated, 2)


# -- DreamApply: a lone surrogate -----------------------------------------------------------


def test_a_journal_item_with_a_lone_surrogate_is_ledgered_as_sent(
    journals: Callable[..., RawJournal], write_config: Callable[..., Path], fast_retries: None
) -> None:
    events = make_events(EVENTS)
    bad = min(i for i in events if i >= 15 and events[i]["event"] == "Applicant registered")
    applicant = int(events[bad]["applicant"].rsplit("/", 1)[1])
    texts = {bad: with_field(events[bad], "note", f'"{LONE_SURROGATE}"')}
    state = resources(events)[("applicants", applicant)]
    named = {("applicants", applicant): with_field(state, "first_name", f'"{LONE_SURROGATE}"')}
    server = journals(events, texts, resource_texts=named)
    path = write_config(server.url)

    assert backfill(path) == 0

    engine = mirror_engine(path)
    rows = ledger(engine, "dreamapply")
    assert {k: v[0] for k, v in rows.items()} == {str(i): "applied" for i in events}
    if engine.dialect.name == "sqlite":
        assert '"note":"Zo\\ud83d"' in payload_text(engine, str(bad))  # the text as sent
    else:  # JSONB refuses a lone surrogate escape: U+FFFD in its place
        assert rows[str(bad)][2]["note"] == "Zo\ufffd"
    assert records(engine, "dreamapply", "applicant")[str(applicant)]["first_name"] == "Zo\ufffd"
    assert cursor(engine, "dreamapply") == (str(EVENTS), EVENTS)
    assert len(server.journal_requests()) == 2  # the page and the empty one: nothing retried


# -- DreamApply: nesting past every parser's depth -----------------------------------------


def deep_journal(journals: Callable[..., RawJournal]) -> tuple[RawJournal, str]:
    """A journal of EVENTS events, DEEP_ID's ``bind`` nested DEPTH deep; and its text."""
    events = make_events(EVENTS)
    sent = orjson.dumps(events[DEEP_ID]).decode()
    text = sent.replace('"bind":[]', f'"bind":{nested()}', 1)
    assert text != sent
    return journals(events, {DEEP_ID: text}), text


def test_a_journal_item_nested_past_every_parser_is_isolated_and_quarantined(
    journals: Callable[..., RawJournal],
    write_config: Callable[..., Path],
    fast_retries: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, text = deep_journal(journals)
    path = write_config(server.url)

    assert backfill(path) == 0

    engine = mirror_engine(path)
    rows = ledger(engine, "dreamapply")
    expected = {str(i): "applied" for i in range(1, EVENTS + 1)} | {str(DEEP_ID): "quarantined"}
    assert {k: v[0] for k, v in rows.items()} == expected
    _, reason, payload = rows[str(DEEP_ID)]
    assert payload == text  # its raw text, kept as a JSON string
    assert reason is not None
    assert f"{DEPTH + 1} levels deep" in reason
    assert cursor(engine, "dreamapply") == (str(EVENTS), EVENTS)
    # Halving from the same bySince until it stands alone: log2(1024) requests
    # after the page that failed, the pages read on the way applied as they came.
    gets = [(r.query.get("bySince", "-"), r.query["limit"]) for r in server.journal_requests()]
    narrowing = [(since, limit) for since, limit in gets if limit != "1024"]
    assert narrowing == [
        ("-", "512"),
        ("-", "256"),
        ("-", "128"),
        ("-", "64"),
        ("-", "32"),
        ("-", "16"),
        ("17", "8"),
        ("17", "4"),
        ("17", "2"),
        ("17", "1"),
    ]
    assert gets == [("-", "1024"), *narrowing, ("18", "1024"), (str(EVENTS + 1), "1024")]
    capsys.readouterr()
    # Read again, it is still what no parser reads: it stays quarantined, no traceback.
    assert main(["quarantine", "-c", str(path), "retry"]) == 0
    out, err = capsys.readouterr()
    assert "applied 0, stale 0, still quarantined 1" in out
    assert "Traceback" not in err
    assert ledger(engine, "dreamapply")[str(DEEP_ID)][:2] == ("quarantined", reason)


def test_on_invalid_stop_stops_at_the_item_nested_past_every_parser(
    journals: Callable[..., RawJournal],
    write_config: Callable[..., Path],
    fast_retries: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = deep_journal(journals)
    path = write_config(server.url, extra='on_invalid = "stop"\n')

    assert backfill(path) == 1

    engine = mirror_engine(path)
    assert cursor(engine, "dreamapply") == (str(DEEP_ID - 1), DEEP_ID - 1)
    assert set(ledger(engine, "dreamapply")) == {str(i) for i in range(1, DEEP_ID)}
    checkpoint = checkpoints.load(engine, "dreamapply")
    assert checkpoint is not None
    assert checkpoint.last_error is not None
    assert f"stopped at event {DEEP_ID}" in checkpoint.last_error
    err = capsys.readouterr().err
    assert f"stopped at event {DEEP_ID}" in err
    assert "Traceback" not in err


def test_a_deep_page_cut_short_is_malformed_and_retried_not_isolated(
    journals: Callable[..., RawJournal], write_config: Callable[..., Path], fast_retries: None
) -> None:
    server, _ = deep_journal(journals)
    server.script(Truncated(times=None))
    path = write_config(server.url)

    assert backfill(path) == 1

    engine = mirror_engine(path)
    assert cursor(engine, "dreamapply") is None
    assert ledger(engine, "dreamapply") == {}
    gets = server.journal_requests()
    assert len(gets) > 1  # retried, as any malformed page
    assert {r.query["limit"] for r in gets} == {"1024"}  # never narrowed
    checkpoint = checkpoints.load(engine, "dreamapply")
    assert checkpoint is not None
    assert checkpoint.last_error is not None
    assert "invalid JSON" in checkpoint.last_error


# -- Edlink: nesting past every parser's depth ---------------------------------------------


def test_an_edlink_event_nested_past_every_parser_is_isolated_by_first(
    edlink: RawEdlink, edlink_config: Callable[..., Path], fast_retries: None
) -> None:
    ann = str(uuid.uuid4())
    edlink.lists["people"] = [person(ann, '"Ann"')]
    path = edlink_config(edlink.url, "page_size = 64")
    assert backfill(path) == 0  # the bootstrap: no events yet
    ids = [str(uuid.uuid4()) for _ in range(EVENTS)]
    for number, event_id in enumerate(ids, 1):
        data = person(ann, f'"Ann {number}"')
        if number == DEEP_ID:
            data = with_field({"id": ann}, "bind", nested())
        edlink.events.append((event_id, event(event_id, "updated", data, ann)))
    before = len(edlink.seen(EVENTS_PATH))

    assert backfill(path) == 0

    engine = mirror_engine(path)
    rows = ledger(engine, "edlink")
    deep = ids[DEEP_ID - 1]
    expected = dict.fromkeys(ids, "applied") | {deep: "quarantined"}
    assert {k: v[0] for k, v in rows.items()} == expected
    _, reason, payload = rows[deep]
    assert payload == edlink.events[DEEP_ID - 1][1]
    assert reason is not None
    assert f"{DEPTH + 2} levels deep" in reason
    assert cursor(engine, "edlink") == (ids[-1], EVENTS)
    assert records(engine, "edlink", "person")[ann]["first_name"] == f"Ann {EVENTS}"
    # The same cursor, $first halving: log2(64) requests after the page that failed.
    firsts = [r.query["$first"] for r in edlink.seen(EVENTS_PATH)[before:]]
    assert firsts == ["64", "32", "16", "8", "4", "2", "1", "64"]
