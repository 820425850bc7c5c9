"""Journal items as DreamApply documents them, through edsync's page parsing and
normalizing: every one of the 48 names, plain and expanded, is ledgered (none
quarantined) with its own id where the item links it, and queues the
resources it names for a read: the journal is a notification feed (SPEC 2.1)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from edsync.errors import MalformedPageError
from edsync.model import Bounds, Change, Quarantined, RawEvent, RawJson, Ref, json_value
from edsync.normalize import normalize_page
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply.journal import EVENT_KINDS, DreamApplySource, Settings
from tests.contract.dreamapply import payloads

# An item's own link (JournalItem.php): referee, task, interview and media
# events carry none, and an expanded document (BinaryRecord) has no id: their
# ledger rows have no entity id, never their application's.
OWN_ID = {"offer": "12", "invoice": "77", "applicant": "123", "application": "321"}


def source(**settings: Any) -> DreamApplySource:
    return DreamApplySource(
        Settings(
            name="da",
            kind="dreamapply",
            base_url=HttpUrl("http://127.0.0.1:1"),
            api_key=Secret("X", "k"),
            **settings,
        )
    )


def logged_name(name: str) -> str:
    """The name as the journal logs it: a status in place of "?"."""
    return name.replace(": ?", ': "Enrolled"')


def expected_id(entity: str, *, expanded: bool) -> str | None:
    if entity == "document":
        return None if expanded else "55"
    return OWN_ID.get(entity)


def expected_refresh(entity: str) -> tuple[Ref, ...]:
    if entity == "applicant":
        return (Ref("applicant", "123", "123"),)
    if entity == "invoice":
        return (Ref("invoice", "77", "123"),)
    return (Ref("application", "321", "123"),)


@pytest.mark.parametrize("expanded", [False, True], ids=["links", "expanded"])
@pytest.mark.parametrize("name", list(EVENT_KINDS))
def test_each_documented_item_normalizes_without_quarantine(name: str, expanded: bool) -> None:
    entity = EVENT_KINDS[name].entity
    item = payloads.journal_item(logged_name(name), entity, expanded=expanded)
    # The wire form: an object keyed by the event id (the journal page's example).
    page = orjson.dumps({"123": item})
    da = source()
    events = da._parse_page(page, 0)
    [change] = normalize_page(events, da.normalize)
    assert isinstance(change, Change), change
    assert (change.entity, change.op) == (entity, EVENT_KINDS[name].op)
    assert change.entity_id == expected_id(entity, expanded=expanded)
    assert change.person_id == "123"
    assert change.occurred_at == payloads.LOGGED
    # The event writes no record itself: the read of what it names does.
    assert not change.touches_record
    assert change.refresh == expected_refresh(entity)


def test_an_expanded_application_without_an_id_is_read_by_its_own_sub_links() -> None:
    """The vendor's application example has no ``id``; its sub-links name it."""
    application = {
        "applicant": payloads.APPLICANT_LINK,
        "created": payloads.LOGGED,
        "offers": "/api/v9/applications/321/offers",
        "documents": "/api/v9/applications/321/documents",
    }
    item = {**payloads.journal_item("Application was submitted", "application", expanded=False)}
    item["application"] = application
    change = source().normalize(_raw(item))
    assert isinstance(change, Change)
    assert change.entity_id == "321"
    assert change.refresh == (Ref("application", "321", "123"),)


def test_an_expanded_offer_without_an_id_borrows_none() -> None:
    """The vendor's offer examples have no ``id``: the ledger row has no entity
    id (never the application's), and the application's read brings the offer."""
    item = payloads.journal_item('Offer was edited: "Enrolled"', "offer", expanded=True)
    item["offer"] = dict(payloads.OFFER_FIELDS)
    change = source().normalize(_raw(item))
    assert isinstance(change, Change)
    assert change.entity_id is None
    assert change.status == "Enrolled"
    assert change.refresh == (Ref("application", "321", "123"),)


def test_two_task_events_of_one_application_borrow_no_id() -> None:
    changes = [
        source().normalize(_raw(payloads.journal_item(name, "task", expanded=False)))
        for name in ('Task was committed as: "Pending"', 'Task was resolved as: "Done"')
    ]
    assert [c.entity_id for c in changes] == [None, None]
    assert {c.refresh for c in changes} == {(Ref("application", "321", "123"),)}


def test_an_item_naming_an_applicant_keeps_them_when_quarantined() -> None:
    item = payloads.journal_item("Application was edited", "application", expanded=True)
    item["logged"] = "yesterday"
    [change] = normalize_page([_raw(item)], source().normalize)
    assert isinstance(change, Quarantined)
    assert change.person_id == "123"  # so an erasure finds this ledger row (SPEC 5.4)


def php_json(value: Any) -> bytes:
    """``value`` as PHP's ``json_encode`` writes it by default (DreamApply runs
    on PHP): ``/`` escaped, and every character past ASCII as ``\\uXXXX``."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


def test_the_ledger_keeps_each_item_as_the_journal_sent_it() -> None:
    item = payloads.journal_item('Offer was edited: "Enrolled"', "offer", expanded=True)
    item["applicant"] = {**item["applicant"], "name": {"given": "Jürgen", "family": "Šmits"}}
    wire = php_json({"124": item, "123": item})
    da = source()
    events = da._parse_page(wire, 0)
    assert [e.event_id for e in events] == ["123", "124"]  # oldest first
    [first, _] = events
    assert isinstance(first.body, RawJson)
    assert first.body.text == php_json(item).decode()  # verbatim, escapes and all
    change = da.normalize(first)
    parsed = da.normalize(RawEvent("123", 123, item))  # a quarantined item retried
    assert change.payload == first.body
    assert json_value(change.payload) == item
    assert (change.entity_id, change.person_id, change.refresh) == (
        parsed.entity_id,
        parsed.person_id,
        parsed.refresh,
    )
    assert (change.entity, change.status, change.data) == ("offer", "Enrolled", None)


def test_a_page_whose_bytes_are_not_utf8_is_malformed_as_a_whole() -> None:
    wire = (
        b'{"123": {"event": "Applicant registered", "applicant": "/api/applicants/1", "x": "\xff"}}'
    )
    with pytest.raises(MalformedPageError, match="invalid JSON"):
        source()._parse_page(wire, 0)


def test_a_page_of_broken_json_is_malformed_as_a_whole() -> None:
    # A cut escape is broken; a lone surrogate (``"\\ud800"``) is valid JSON,
    # read as such (SPEC 5.3, tests/integration/test_hostile_json.py).
    broken = (b'{"123": {"event": "A", "x": [1,}}', b'{"123": {"x": "\\ud8"}}', b'{"123": ')
    for wire in broken:
        with pytest.raises(MalformedPageError, match="invalid JSON in response"):
            source()._parse_page(wire, 0)
    for wire in (b"[1]", b'"down for maintenance"'):
        with pytest.raises(MalformedPageError, match="journal page is not an object of events"):
            source()._parse_page(wire, 0)
    assert source()._parse_page(b"[]", 0) == []  # PHP's empty map: the end


def test_an_item_holding_a_number_past_a_double_is_ledgered_as_sent() -> None:
    """JSON allows 1e400; orjson refuses to build it. Normalizing reads only
    the links, so the item is ledgered (not quarantined), its text kept as
    sent, and it still reads back."""
    item = payloads.journal_item("Application was edited", "application", expanded=True)
    wire = orjson.dumps({"123": item}).replace(b'"id":321', b'"id":321,"score":1e400', 1)
    da = source()
    [change] = normalize_page(da._parse_page(wire, 0), da.normalize)
    assert isinstance(change, Change)
    assert change.refresh == (Ref("application", "321", "123"),)
    assert change.person_id == "123"  # so an erasure still scrubs it (SPEC 5.4)
    assert isinstance(change.payload, RawJson)
    assert "1e400" in change.payload.text
    assert json_value(change.payload)["application"]["score"] == float("inf")


def test_by_events_is_always_sent_every_name_when_none_configured() -> None:
    params = source()._params(None, _bounds())
    assert params["byEvents"].split(",") == list(EVENT_KINDS)
    chosen = source(events=['Offer was edited: "Enrolled"'])._params("5", _bounds())
    assert chosen["byEvents"] == 'Offer was edited: "Enrolled"'


def test_new_names_listed_deliberately_are_asked_for_too() -> None:
    settings = {"events": ["Applicant registered", "Ticket was raised"]}
    assert _check(**settings) == "events"
    assert _check(**settings, new_events=["Ticket was raised"]) is None
    da = source(**settings, new_events=["Ticket was raised"])
    assert da._params(None, _bounds())["byEvents"] == "Applicant registered,Ticket was raised"
    everything = source(new_events=["Ticket was raised"])._params(None, _bounds())
    assert everything["byEvents"].split(",") == [*EVENT_KINDS, "Ticket was raised"]


def _check(**settings: Any) -> str | None:
    problem = source(**settings).settings.check()
    return None if problem is None else problem[0]


def _raw(item: dict[str, Any]) -> RawEvent:
    return RawEvent("123", 123, item)


def _bounds() -> Bounds:
    return Bounds()
