"""Edlink Graph event stream (SPEC 2.2): ``/api/v2/graph/events`` after the last id.

Events carry no sequence number: position is our receipt order, continued
from the checkpoint. ``$next`` is followed within a drain but never stored
(its cursor expires); the checkpoint holds the last applied event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import orjson

from edsync.errors import (
    ConfigError,
    FatalError,
    GapError,
    InvalidEventError,
    MalformedPageError,
    RefusedError,
    UnreadableJsonError,
)
from edsync.http import HttpClient, Reply
from edsync.model import Bounds, Change, Cursor, Op, RawEvent, RawPage, Unreadable
from edsync.normalize import bound_time, iso_seconds, utc_timestamp
from edsync.pages import Page, by_link
from edsync.settings import SourceSettings
from edsync.sources.edlink.graph import (
    PERSON_ENTITY,
    Link,
    Settings,
    lone_event,
    next_link,
    person_of,
)
from edsync.sources.edlink.refusals import REFUSALS, refusal_detail, refusal_error
from edsync.sources.edlink.snapshot import GraphSnapshot

if TYPE_CHECKING:
    from edsync.sources.base import Snapshotter

EVENTS_PATH = "/api/v2/graph/events"
OPS: frozenset[str] = frozenset({"created", "updated", "deleted"})


def _event_time(body: object) -> float | None:
    """When the event occurred (``date``; ``created_date`` in the older form), in
    Unix seconds; None when it has no readable date."""
    if not isinstance(body, dict):
        return None
    value = body.get("date") or body.get("created_date")
    return iso_seconds(value) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class _Until:
    """Where ``--until`` stops: after the event ``event_id`` (when given), and
    before any event dated after ``time`` (when known)."""

    event_id: str | None
    time: float | None

    def after(self, raw: object) -> bool:
        if self.time is None:
            return False
        when = _event_time(raw)
        return when is not None and when > self.time

    def reached(self, raw: object) -> bool:
        return self.event_id is not None and _event_id(raw) == self.event_id


@dataclass(slots=True)
class _Window:
    """The part of the stream a drain keeps: from the first event not dated
    before ``since`` (when set) up to ``until``."""

    until: _Until | None
    since: float | None = None

    def cut(self, data: list[Any], position: int) -> tuple[list[RawEvent], bool]:
        """The events of a page kept, numbered on from ``position``; and whether
        ``until`` ended the stream there."""
        events: list[RawEvent] = []
        for raw in data:
            if self.since is not None:
                when = _event_time(raw)
                if when is not None and when < self.since:
                    continue
                self.since = None  # chronological: every later event is kept too
            if self.until is not None and self.until.after(raw):
                return events, True
            position += 1
            events.append(RawEvent(_event_id(raw), position, raw))
            if self.until is not None and self.until.reached(raw):
                return events, True
        return events, False


def _event_id(body: object) -> str:
    """The event's id, or a content hash so a replay of a broken event still dedupes."""
    if isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"]:
        return str(body["id"])
    if isinstance(body, Unreadable):
        if body.id:
            return body.id
        content = body.text.encode()
    else:
        content = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return f"invalid-{hashlib.sha256(content).hexdigest()[:32]}"


@dataclass(slots=True)
class _Read:
    """The id of the last event a drain read, kept or dropped: where ``$after``
    resumes when a ``$next`` expired."""

    up_to: str | None


class EdlinkSource(GraphSnapshot):
    kind = "edlink"
    person_entity = PERSON_ENTITY

    def __init__(self, settings: Settings, http: HttpClient | None = None) -> None:
        super().__init__(settings, http)
        self.retention: float | None = settings.retention
        self.resync: str = settings.resync

    @property
    def snapshotter(self) -> Snapshotter:
        """Every Edlink source can snapshot: its graph lists (``GraphSnapshot``)."""
        return self

    @property
    def refresher(self) -> None:
        """Edlink's events carry the objects themselves: nothing to read again."""
        return None

    # -- the stream -----------------------------------------------------------

    def probe(self) -> str:
        reply = self.http.once("GET", EVENTS_PATH, {"$last": "1"}, expect=REFUSALS)
        _, body = self._read()(reply)
        newest = self._data(reply, body)
        return "stream readable" + (", no events" if not newest else "")

    def pending(self, cursor: Cursor | None, bounds: Bounds) -> int | None:
        return None  # the stream has no count: progress shows events, not a total

    def head(self) -> str | None:
        try:
            reply, body = self.http.fetch(
                "GET", EVENTS_PATH, {"$last": "1"}, self._read(), expect=REFUSALS
            )
        except UnreadableJsonError as exc:  # its id is all a head needs
            return _event_id(lone_event(exc.text, f"source {self.name!r}").items[0])
        data = self._data(reply, body)
        return _event_id(data[-1]) if data else None

    def pages(self, cursor: Cursor | None, bounds: Bounds) -> Iterator[RawPage]:
        """Events after ``cursor``; without one, from ``bounds.since`` (inclusive).

        Edlink pages by ``$after`` (exclusive) and has no date filter on events
        (api/v2.0/graph/events.md, guides/v2.0/paginated-requests.md): a
        ``--since`` id is fetched itself (``GET /events/{id}``) and the stream
        goes on after it; a ``--since`` time reads from the oldest retained
        event and drops those dated before it. ``--until`` stops after the event
        of that id (ids are UUIDs: stop when seen, or at an event dated after
        it), or before the first event dated after that time.
        """
        position = cursor.position if cursor is not None else 0
        after = cursor.value if cursor is not None and cursor.value else None
        window = _Window(until=self._until(bounds.until))
        start: list[Any] = []  # the --since event, served before those after it
        if after is None and bounds.since:
            window.since = bound_time(bounds.since)
            if window.since is None:
                start = [self._event(bounds.since, "--since")]
                after = bounds.since
        size = self.settings.page_size
        first: Link = (EVENTS_PATH, {"$first": str(size)} | ({"$after": after} if after else {}))
        read = _Read(after)  # the last event read, kept or dropped: where $after resumes
        fetch = partial(self._events_page, read)
        for page in by_link(fetch, first, size, self._lone_event):
            data = start + list(page.items)
            start = []
            if not data:
                return
            read.up_to = _event_id(data[-1])
            events, done = window.cut(data, position)
            if events:
                position = events[-1].position
                # The cursor is the last event kept: a later run goes on from there.
                after = events[-1].event_id
                spent = self.http.spent
                yield RawPage(events, Cursor(after, position), spent.network, spent.read)
            if done:
                return

    def _events_page(self, read: _Read, link: Link, size: int) -> Page[Any, Link]:
        """One page of events, read inside the retries (a truncated page is
        retried like a 5xx), and the ``$next`` after it."""
        url, params = self._sized(link, size)
        try:
            reply, body = self.http.fetch(
                "GET", url, params, self._read(after=read.up_to), expect=REFUSALS
            )
        except GapError:
            if params is not None or not read.up_to:
                raise
            # Our own $next expired mid-drain: resume from the last id instead.
            params = {"$first": str(size), "$after": read.up_to}
            reply, body = self.http.fetch(
                "GET", EVENTS_PATH, params, self._read(after=read.up_to), expect=REFUSALS
            )
        return Page(self._data(reply, body), next_link(body))

    def _lone_event(self, link: Link, error: UnreadableJsonError) -> Page[Any, Link]:
        """The event of a page of ``$first=1`` that no parser reads, to be
        quarantined, and the page after it (SPEC 5.3)."""
        return lone_event(error.text, f"source {self.name!r}")

    def _until(self, value: str | None) -> _Until | None:
        if not value:
            return None
        when = bound_time(value)
        if when is not None:
            return _Until(None, when)
        # Its date too: a drain that started past it stops at the first later event.
        return _Until(value, _event_time(self._event(value, "--until")))

    def _event(self, event_id: str, flag: str) -> dict[str, Any]:
        """The event ``event_id`` itself (``GET /api/v2/graph/events/{id}``), named
        by ``backfill {flag}``; one Edlink does not serve is the user's mistake."""

        def read(reply: Reply) -> dict[str, Any]:
            if reply.status >= 400:
                error = refusal_error(reply, self)
                if type(error) is RefusedError:  # neither the token's nor the integration's
                    _, detail = refusal_detail(reply, self.http.secrets)
                    raise FatalError(
                        f"source {self.name!r}: backfill {flag} {event_id!r}: Edlink serves "
                        f"no such event ({detail}); give the id of an event of the last "
                        "30 days or an ISO 8601 time"
                    )
                raise error
            body = reply.json(f"source {self.name!r}")
            event = body.get("$data") if isinstance(body, dict) else None
            if not isinstance(event, dict) or _event_id(event) != event_id:
                raise MalformedPageError(
                    f"source {self.name!r}: response has no event {event_id!r} in `$data`"
                )
            return event

        path = f"{EVENTS_PATH}/{quote(event_id, safe='')}"
        return self.http.fetch("GET", path, None, read, expect=REFUSALS)

    # -- normalization -----------------------------------------------------------

    def normalize(self, raw: RawEvent) -> Change:
        body = raw.body
        if not isinstance(body, dict):
            raise InvalidEventError(f"event is not an object but {type(body).__name__}")
        if not isinstance(body.get("id"), str):
            raise InvalidEventError("event has no `id`")
        kind = body.get("type")
        if not isinstance(kind, str) or not kind:
            raise InvalidEventError("event has no `type`")
        entity, op = self._entity_op(body, kind)
        data = body.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidEventError("event `data` is not an object")
        entity_id = body.get("target_id") or data.get("id")
        if not isinstance(entity_id, str) or not entity_id:
            raise InvalidEventError(f"{kind!r} event names no {entity} id")
        return Change(
            event_id=raw.event_id,
            position=raw.position,
            type=kind if "." in kind else f"{entity}.{kind}",
            entity=entity,
            entity_id=entity_id,
            op=op,
            occurred_at=utc_timestamp(body.get("date") or body.get("created_date")),
            payload=body,
            data=data,
            person_id=person_of(entity, entity_id, data),
        )

    @staticmethod
    def _entity_op(body: dict[str, Any], kind: str) -> tuple[str, Op]:
        # v2: type "created" + target "person"; the seed's older form: "person.created".
        if "." in kind:
            entity, _, op = kind.partition(".")
        else:
            target = body.get("target")
            if not isinstance(target, str) or not target:
                raise InvalidEventError(f"{kind!r} event has no `target`")
            entity, op = target, kind
        if op not in OPS or not entity:
            raise InvalidEventError(f"unknown event type {kind!r}")
        return entity, cast(Op, op)  # checked against OPS just above


def pattern_problem(pattern: str) -> str | None:
    """Edlink rule events are ``<entity>.<op>``, e.g. ``person.created``."""
    entity, _, op = pattern.partition(".")
    if entity and op in OPS:
        return None
    return f"{pattern!r} is not an Edlink event type like 'person.created'"


def create(settings: SourceSettings) -> EdlinkSource:
    if not isinstance(settings, Settings):
        raise ConfigError("", f"sources.{settings.name}", "not Edlink settings")
    return EdlinkSource(settings)
