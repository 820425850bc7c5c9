"""Journal items as DreamApply documents them, through edsync's page parsing and
normalizing: every one of the 48 names, plain and expanded, becomes a record
change of its entity, none quarantined for lack of a link of its own."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from edsync.errors import MalformedPageError
from edsync.model import Bounds, Change, Quarantined, RawEvent, RawJson, json_value
from edsync.normalize import normalize_page
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply.journal import EVENT_KINDS, DreamApplySource, Settings
from tests.contract.dreamapply import payloads

# The fallback SPEC 2.1 prescribes: the subject's own link where the item has
# one, else its application's (referee, task, interview and media events never
# carry their own; an expanded document has no id).
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


def expected_id(entity: str, *, expanded: bool) -> str:
    if entity == "document":
        return "321" if expanded else "55"  # BinaryRecord has no id: the fallback
    return OWN_ID.get(entity, "321")


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
    assert change.touches_record


def test_an_expanded_document_is_kept_as_the_record_data() -> None:
    item = payloads.journal_item("Document was uploaded", "document", expanded=True)
    change = source().normalize(_raw(item))
    assert change.data == payloads.DOCUMENT
    assert change.entity_id == "321"


def test_a_fallback_record_keeps_the_links_not_the_expanded_applicant() -> None:
    item = payloads.journal_item("Referee committed reference", "referee", expanded=True)
    change = source().normalize(_raw(item))
    assert change.data is not None
    assert change.data["applicant"] == {"id": 123}  # reduced: no personal data copied
    assert payloads.APPLICANT["email"] not in orjson.dumps(change.data).decode()


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
    assert (change.entity_id, change.person_id, change.data) == (
        parsed.entity_id,
        parsed.person_id,
        parsed.data,
    )
    # The vendor's Offer has no application link: the record gets the event's.
    assert "application" not in payloads.EXPANDED["offer"]
    assert (change.entity, change.status, change.data) == (
        "offer",
        "Enrolled",
        {**payloads.EXPANDED["offer"], "application": "/api/applications/321"},
    )


def test_a_page_whose_bytes_are_not_utf8_is_malformed_as_a_whole() -> None:
    wire = (
        b'{"123": {"event": "Applicant registered", "applicant": "/api/applicants/1", "x": "\xff"}}'
    )
    with pytest.raises(MalformedPageError, match="invalid JSON"):
        source()._parse_page(wire, 0)


def test_a_page_of_broken_json_is_malformed_as_a_whole() -> None:
    broken = (b'{"123": {"event": "A", "x": [1,}}', b'{"123": {"x": "\\ud800"}}', b'{"123": ')
    for wire in broken:
        with pytest.raises(MalformedPageError, match="invalid JSON in response"):
            source()._parse_page(wire, 0)
    for wire in (b"[1]", b'"down for maintenance"'):
        with pytest.raises(MalformedPageError, match="journal page is not an object of events"):
            source()._parse_page(wire, 0)
    assert source()._parse_page(b"[]", 0) == []  # PHP's empty map: the end


def test_an_item_holding_a_number_past_a_double_is_quarantined_and_kept() -> None:
    """JSON allows 1e400; orjson refuses to build it. Only that item is
    quarantined, its text kept as sent, and it still reads back."""
    item = payloads.journal_item("Application was edited", "application", expanded=True)
    wire = orjson.dumps({"123": item}).replace(b'"id":321', b'"id":321,"score":1e400', 1)
    da = source()
    [change] = normalize_page(da._parse_page(wire, 0), da.normalize)
    assert isinstance(change, Quarantined)
    assert "cannot read" in change.reason
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
