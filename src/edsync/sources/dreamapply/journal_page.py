"""A DreamApply journal page as read (SPEC 2.1): ``{"123": {…}, …}`` split into
each event's own JSON text, which is what the ledger stores, so the large
expanded objects are neither built as Python objects nor written again.

msgspec splits a page in C. A page it refuses is not yet invalid (SPEC 5.3):
a lone surrogate escape, nesting past its depth. ``jsontext``'s scan reads it
again: each event's text exactly as sent, or, for an event no parser here
reads, ``UnreadableJsonError`` (the journal narrows the page until that event
stands alone: ``lone_event``); only a text that is not JSON is malformed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from edsync import jsontext
from edsync.errors import MalformedPageError, UnreadableJsonError
from edsync.model import RawEvent, RawJson, Unreadable

_EVENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits that fit a 64-bit position
_PAGE = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[Any])


def read_page(page: bytes, floor: int, target: str) -> list[RawEvent]:
    """The page's events after ``floor``, oldest first, each body the event's
    own JSON text (``page``: the reply's body)."""
    body = _split(page, target)
    if isinstance(body, list) and not body:
        return []  # PHP renders an empty map as []
    if not isinstance(body, dict):
        raise MalformedPageError(f"{target}: journal page is not an object of events")
    events = []
    for key, value in body.items():
        position = _position(key, target)
        if position > floor:  # a server repeating old ids must not move us back
            events.append(RawEvent(key, position, _event_text(value, target)))
    if body and not events:
        # Only an empty page is the end; one of nothing but old ids is a stale answer.
        raise MalformedPageError(
            f"{target}: journal page after id {floor} holds only events already applied"
        )
    events.sort(key=lambda e: e.position)
    return events


def lone_event(text: str, floor: int, target: str) -> RawEvent:
    """The one event of a page narrowed to it (``text``) that no parser here
    reads: its id from the page's key, its text as sent, to be quarantined."""
    page = _outline(text, target)
    if not isinstance(page, dict) or len(page) != 1:
        raise MalformedPageError(f"{target}: a journal page of limit 1 holds no single event")
    ((key, span),) = page.items()
    position = _position(key, target)
    if position <= floor:
        raise MalformedPageError(f"{target}: journal page after id {floor} holds id {key}")
    reason = (
        f"event nested {span.depth} levels deep, past what a parser here reads "
        f"({jsontext.MAX_DEPTH}); its payload is its text as sent"
    )
    return RawEvent(key, position, Unreadable(span.of(text), reason, key))


def _position(key: str, target: str) -> int:
    if not _EVENT_ID.fullmatch(key):
        raise MalformedPageError(f"{target}: journal key {key!r} is not an id")
    return int(key)


def _split(body: bytes, target: str) -> Mapping[str, msgspec.Raw | str] | list[Any]:
    try:
        return _PAGE.decode(body)
    except msgspec.ValidationError:  # JSON, but neither an object nor PHP's empty []
        raise MalformedPageError(f"{target}: journal page is not an object of events") from None
    except (msgspec.DecodeError, RecursionError):
        pass  # out of the handler: the scan must not run on a full stack
    return _split_slowly(body, target)


def _split_slowly(body: bytes, target: str) -> dict[str, str] | list[Any]:
    """The page msgspec refused, split by the scan: each event's text as sent
    (a lone surrogate escape kept as it came)."""
    text = _decoded(body, target)
    page = _outline(text, target)
    if isinstance(page, list) and not page:
        return page  # PHP's empty map
    if not isinstance(page, dict):
        raise MalformedPageError(f"{target}: journal page is not an object of events")
    deepest = max((span.depth for span in page.values()), default=0)
    if deepest > jsontext.MAX_DEPTH:
        raise UnreadableJsonError(
            f"{target}: a journal event nested {deepest} levels deep, past what a "
            f"parser here reads ({jsontext.MAX_DEPTH})",
            text=text,
        )
    return {key: span.of(text) for key, span in page.items()}


def _decoded(body: bytes, target: str) -> str:
    try:
        return jsontext.decode(body)
    except jsontext.NotJsonError as exc:
        raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None


def _outline(text: str, target: str) -> Any:
    """The page's events as ``jsontext.Span`` by key; MalformedPageError if it
    is not JSON (truncated, invalid)."""
    try:
        return jsontext.outline(text, 1)
    except jsontext.NotJsonError as exc:
        raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None


def _event_text(raw: msgspec.Raw | str, target: str) -> RawJson:
    if isinstance(raw, str):
        return RawJson(raw)
    # msgspec checked the value's syntax and escapes, not that its bytes are
    # UTF-8: a page orjson refused is refused here too.
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPageError(f"{target}: invalid JSON in response ({exc})") from None
    return RawJson(text)
