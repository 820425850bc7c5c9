"""Pages a fast parser refuses, as each kind reads them (SPEC 5.3): the
DreamApply journal's split keeps each event's text as sent; a page of one
item no parser reads becomes that item, with its id; Edlink narrows a
``$next`` without touching its cursor."""

from __future__ import annotations

import orjson
import pytest

from edsync.errors import MalformedPageError, UnreadableJsonError
from edsync.model import RawJson, Unreadable
from edsync.normalize import normalize_page
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply.journal import DreamApplySource, Settings
from edsync.sources.dreamapply.journal_page import lone_event, read_page
from edsync.sources.edlink.graph import first_of, with_first
from edsync.sources.edlink.graph import lone_event as lone_edlink_event

TARGET = "source 'x'"
ITEM = {"logged": "2026-06-01T08:00:00+00:00", "event": "Applicant registered"}
DEEP = "[" * 3000 + "]" * 3000


def item_text(base: dict[str, str] | None = None, **extra: str) -> str:
    """``base`` (ITEM) as JSON text, each of ``extra`` a member whose value is that text."""
    body = {**(ITEM if base is None else base), "applicant": "/api/applicants/5"}
    text = orjson.dumps(body).decode()[:-1]
    return text + "".join(f',"{name}":{value}' for name, value in extra.items()) + "}"


def test_a_journal_page_with_a_lone_surrogate_keeps_each_event_as_sent() -> None:
    lone = item_text(note='"Zo\\ud83d"')
    page = f'{{"7": {item_text()}, "8": {lone}}}'.encode()
    events = read_page(page, 0, TARGET)
    assert [(e.event_id, e.body) for e in events] == [
        ("7", RawJson(item_text())),
        ("8", RawJson(lone)),
    ]


def test_a_journal_event_with_a_lone_surrogate_normalizes() -> None:
    settings = Settings(
        name="x",
        kind="dreamapply",
        base_url=HttpUrl("http://127.0.0.1:1"),
        api_key=Secret("X", "k"),
    )
    source = DreamApplySource(settings)
    cut = item_text({"logged": ITEM["logged"]}, event='"Applicant registered\\ud83d"')
    try:
        page = ('{"8": ' + cut + "}").encode()
        # A name cut inside an emoji is unknown, not unreadable: ledgered, U+FFFD in it.
        (change,) = normalize_page(read_page(page, 0, TARGET), source.normalize)
    finally:
        source.close()
    assert change.type == "Applicant registered\ufffd"
    assert change.payload == RawJson(cut)


def test_a_journal_page_with_an_event_past_every_parser_is_unreadable() -> None:
    page = f'{{"7": {item_text()}, "8": {item_text(bind=DEEP)}}}'.encode()
    with pytest.raises(UnreadableJsonError, match="3001 levels deep") as raised:
        read_page(page, 0, TARGET)
    assert raised.value.text == page.decode()
    with pytest.raises(MalformedPageError, match="invalid JSON"):
        read_page(page[:-2], 0, TARGET)  # cut short: malformed, however deep


def test_the_lone_event_of_a_narrowed_page_is_kept_as_its_text() -> None:
    deep = item_text(bind=DEEP)
    event = lone_event(f'{{"8": {deep}}}', 7, TARGET)
    assert (event.event_id, event.position) == ("8", 8)
    assert isinstance(event.body, Unreadable)
    assert (event.body.text, event.body.id) == (deep, "8")
    (quarantined,) = normalize_page([event], lambda raw: pytest.fail("not normalized"))
    assert (quarantined.event_id, quarantined.payload) == ("8", deep)
    assert "3001 levels deep" in getattr(quarantined, "reason", "")
    with pytest.raises(MalformedPageError):
        lone_event(f'{{"8": {deep}}}', 8, TARGET)  # not past the cursor: a stale answer
    with pytest.raises(MalformedPageError):
        lone_event(f'{{"8": {deep}, "9": 1}}', 7, TARGET)


def test_an_edlink_page_of_one_deep_event_names_it_and_what_follows() -> None:
    event = '{"id": "e-17", "type": "updated", "data": {"bind": ' + DEEP + "}}"
    text = '{"$data": [' + event + '], "$next": "https://ed.link/x?$first=1&$cursor=Q+/=", "$r": 1}'
    page = lone_edlink_event(text, TARGET)
    (item,) = page.items
    assert item == Unreadable(item.text, item.reason, "e-17")
    assert item.text == event
    assert page.following == ("https://ed.link/x?$first=1&$cursor=Q+/=", None)
    nameless = lone_edlink_event('{"$data": [{"id": 3, "d": ' + DEEP + "}]}", TARGET)
    assert nameless.following is None
    assert isinstance(nameless.items[0], Unreadable)
    assert nameless.items[0].id is None


def test_narrowing_an_edlink_link_keeps_its_cursor_byte_for_byte() -> None:
    link = ("https://ed.link/api/v2/graph/events?$first=64&$cursor=a%2Bb+c/=", None)
    assert first_of(link) == "64"
    narrowed = with_first(link, 8)
    assert narrowed == ("https://ed.link/api/v2/graph/events?$cursor=a%2Bb+c/=&$first=8", None)
    assert first_of(narrowed) == "8"
    own = ("/api/v2/graph/events", {"$first": "64", "$after": "e-1"})
    assert with_first(own, 4) == ("/api/v2/graph/events", {"$first": "4", "$after": "e-1"})
    assert first_of(("https://ed.link/x?$cursor=1", None)) is None
