"""Edlink Graph event stream (SPEC 2.2): ``/api/v2/graph/events`` after the last id.

Events carry no sequence number: position is our receipt order, continued
from the checkpoint. ``$next`` is followed within a drain but never stored
(its cursor expires); the checkpoint holds the last applied event id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import orjson
import structlog

from edsync.errors import (
    AuthError,
    ConfigError,
    EdsyncError,
    FatalError,
    GapError,
    InvalidEventError,
    MalformedPageError,
    RefusedError,
    RetriableError,
    parse_retry_after,
)
from edsync.http import HttpClient, Reply
from edsync.model import (
    SNAPSHOT_DONE,
    Bounds,
    Change,
    Cursor,
    Op,
    RawEvent,
    RawPage,
    SnapshotObject,
    SnapshotPage,
)
from edsync.normalize import bound_time, iso_seconds, utc_timestamp
from edsync.settings import Duration, HttpUrl, Secret, SourceSettings

if TYPE_CHECKING:
    from edsync.sources.base import Snapshotter

log = structlog.get_logger("edsync.edlink")

EVENTS_PATH = "/api/v2/graph/events"
MAX_PAGE = 10_000
# The Graph list endpoints, in the order Edlink recommends for a bootstrap.
COLLECTIONS: tuple[tuple[str, str], ...] = (
    ("district", "districts"),
    ("school", "schools"),
    ("session", "sessions"),
    ("course", "courses"),
    ("person", "people"),
    ("class", "classes"),
    ("section", "sections"),
    ("enrollment", "enrollments"),
    ("agent", "agents"),
)
OPS: frozenset[str] = frozenset({"created", "updated", "deleted"})
# Read here, not by HttpClient: Edlink says in `$errors` what a 4xx means (a
# 400 may be a dead token or a purged cursor). 408/425/429 stay transient.
REFUSALS: frozenset[int] = frozenset(range(400, 500)) - {408, 425, 429}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SourceSettings):
    base_url: HttpUrl = HttpUrl("https://ed.link")
    token: Secret
    interval: Duration = Duration(300.0)
    page_size: int = 1000
    retention: Duration = Duration(30 * 86400.0)
    resync: Literal["auto", "manual"] = "auto"

    def check(self) -> tuple[str, str] | None:
        if not 1 <= self.page_size <= MAX_PAGE:
            return "page_size", f"must be between 1 and {MAX_PAGE} (Edlink's $first)"
        return None


def _refusal(reply: Reply, secrets: Collection[str]) -> tuple[tuple[str, ...], str]:
    """The codes of Edlink's ``{"$errors": [{"code", "message"}]}`` and the whole as
    one line, with anything we sent as a credential masked."""
    try:
        body = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        body = None
    errors = body.get("$errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        errors = []
    found = [e for e in errors if isinstance(e, dict)]
    codes = tuple(str(e["code"]) for e in found if isinstance(e.get("code"), str))
    text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}" for e in found)
    for secret in secrets:
        text = text.replace(secret, "***")
    detail = f"HTTP {reply.status} {text}" if text else f"HTTP {reply.status}"
    return codes, " ".join(detail[:300].split())


class IntegrationStateError(FatalError):
    """``INVALID_INTEGRATION_STATE``: the integration cannot be read now
    (disabled, not yet approved or started). A human acts upstream; it is not a
    gap, so nothing is resynced: the source fails this poll and the daemon tries
    again on its next interval."""


# Edlink answers most refusals with HTTP 400 and says why in ``$errors[].code``
# (edlink/docs api/v2.0/responses/errors.md); SPEC 2.2 says what each means.
# The token's, and the person's it acts for: no retry or resync can fix these,
# a new token or a sharing change can.
CREDENTIAL_CODES = frozenset(
    {
        "INVALID_TOKEN",
        "EXPIRED_TOKEN",
        "UNAUTHORIZED",  # not in the vendor's list, named by SPEC 2.2
        "UNSHARED_TOKEN",
        "INVALID_PROVIDER_TOKEN",
        "NO_PERMISSION",
    }
)
STATE_CODES = frozenset({"INVALID_INTEGRATION_STATE"})
# "The server encountered an unexpected condition": Edlink's 5xx spelled as a 400.
TRANSIENT_CODES = frozenset({"UNKNOWN", "INTERNAL"})
# A refusal of the id sent as `$after` (or of the cursor inside our own
# `$next`): only these say that events may have been missed.
CURSOR_CODES = frozenset({"INVALID_CURSOR", "NOT_FOUND", "INVALID_UUID"})


def refusal_error(reply: Reply, source: EdlinkSource, after: str | None = None) -> EdsyncError:
    """The one place where an Edlink refusal (status + codes) becomes edsync's error.

    ``after``: the stored event id the request resumes from, if any; only a
    cursor code then is a gap. Any other code, documented or not, is a source
    error naming it (``RefusedError``): backed off, never a resync.
    """
    codes, detail = _refusal(reply, source.http.secrets)
    found, status, what = set(codes), reply.status, f"source {source.name!r}"
    if found & CREDENTIAL_CODES or status in (401, 403):
        token = source.settings.token
        where, fix = (
            (f"file {token.file}", f"put a valid integration access token in {token.file}")
            if token.file
            else (f"${token.env}", f"set {token.env} to a valid integration access token")
        )
        return AuthError(f"{what}: Edlink refused the token in {where} ({detail}); {fix}")
    if found & STATE_CODES:
        return IntegrationStateError(
            f"{what}: the Edlink integration cannot be read now ({detail}); "
            "edsync tries again next interval"
        )
    if found & TRANSIENT_CODES or status in (408, 425, 429) or status >= 500:
        header = reply.headers.get("Retry-After") if status in (429, 503) else None
        return RetriableError(
            f"{what}: Edlink failed ({detail})", retry_after=parse_retry_after(header)
        )
    if after is not None and found & CURSOR_CODES:
        return GapError(
            f"{what}: Edlink refused the cursor {after!r} ({detail}); events may have been missed"
        )
    return RefusedError(
        f"{what}: Edlink refused the request ({detail}); not a gap: "
        "the source backs off and tries again"
    )


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
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"invalid-{digest[:32]}"


class EdlinkSource:
    kind = "edlink"
    person_entity = "person"
    snapshot_entities: tuple[str, ...] = tuple(entity for entity, _ in COLLECTIONS)

    def __init__(self, settings: Settings, http: HttpClient | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.retention: float | None = settings.retention
        self.resync: str = settings.resync
        self.http = http or HttpClient(
            f"source {settings.name!r}",
            settings.base_url,
            headers={"Authorization": f"Bearer {settings.token.reveal()}"},
            timeout=settings.timeout,
            retry_for=settings.retry_for,
            ca_bundle=settings.ca_bundle,
            credential_env=settings.token.env,
            credential_file=settings.token.file,
        )

    @property
    def snapshotter(self) -> Snapshotter:
        """Every Edlink source can snapshot: its graph lists (below)."""
        return self

    @property
    def refresher(self) -> None:
        """Edlink's events carry the objects themselves: nothing to read again."""
        return None

    def close(self) -> None:
        self.http.close()

    # -- the stream -----------------------------------------------------------

    def probe(self) -> str:
        reply = self.http.once("GET", EVENTS_PATH, {"$last": "1"}, expect=REFUSALS)
        _, body = self._read()(reply)
        newest = self._data(reply, body)
        return "stream readable" + (", no events" if not newest else "")

    def pending(self, cursor: Cursor | None, bounds: Bounds) -> int | None:
        return None  # the stream has no count: progress shows events, not a total

    def head(self) -> str | None:
        reply, body = self.http.fetch(
            "GET", EVENTS_PATH, {"$last": "1"}, self._read(), expect=REFUSALS
        )
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
        first = str(self.settings.page_size)
        read_up_to = after  # the last event read, kept or dropped: where $after resumes
        params: dict[str, str] | None = {"$first": first}
        if after:
            assert params is not None
            params["$after"] = after
        url = EVENTS_PATH
        while True:
            # Read inside the retries: a truncated page is retried like a 5xx.
            try:
                reply, body = self.http.fetch(
                    "GET", url, params, self._read(after=read_up_to), expect=REFUSALS
                )
            except GapError:
                if url == EVENTS_PATH or not read_up_to:
                    raise
                # Our own $next expired mid-drain: resume from the last id instead.
                url, params = EVENTS_PATH, {"$first": first, "$after": read_up_to}
                continue
            data = start + self._data(reply, body)
            start = []
            if not data:
                return
            read_up_to = _event_id(data[-1])
            events, done = window.cut(data, position)
            if events:
                position = events[-1].position
                # The cursor is the last event kept: a later run goes on from there.
                after = events[-1].event_id
                spent = self.http.spent
                yield RawPage(events, Cursor(after, position), spent.network, spent.read)
            next_url = body.get("$next") if isinstance(body, dict) else None
            if done or not isinstance(next_url, str) or not next_url:
                return
            url, params = next_url, None

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
                    _, detail = _refusal(reply, self.http.secrets)
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

    def _read(self, *, after: str | None = None) -> Callable[[Reply], tuple[Reply, object]]:
        """A reader of one reply: its parsed body, checked for `$data`; or the
        refusal it carries as edsync's error (``after``: see ``refusal_error``)."""

        def read(reply: Reply) -> tuple[Reply, object]:
            if reply.status >= 400:
                raise refusal_error(reply, self, after)
            body = reply.json(f"source {self.name!r}")
            self._data(reply, body)
            return reply, body

        return read

    def _data(self, reply: Reply, body: object = None) -> list[Any]:
        body = reply.json(f"source {self.name!r}") if body is None else body
        data = body.get("$data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise MalformedPageError(f"source {self.name!r}: response has no `$data` list")
        return data

    # -- the snapshot -----------------------------------------------------------

    def after_snapshot(self, head: str | None, base: int) -> Cursor:
        # Positions are receipt order: the stream goes on numbering from base.
        return Cursor(head or "", base)

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        """The lists in order; ``resume`` (an entity) restarts that entity's list,
        since a ``$next`` link expires and cannot be kept.

        Nothing of a page is kept once it is yielded (its bytes go as soon as
        they are parsed): with the consumer letting go of it too, one page at
        a time is in memory, however many the lists hold."""
        kinds = [entity for entity, _ in COLLECTIONS]
        start = 0 if resume is None else _resume_index(kinds, resume)
        for index, (entity, collection) in enumerate(COLLECTIONS[start:], start):
            following = kinds[index + 1] if index + 1 < len(kinds) else SNAPSHOT_DONE
            url = f"/api/v2/graph/{collection}"
            params: dict[str, str] | None = {"$first": str(self.settings.page_size)}
            while True:
                reply, body = self.http.fetch("GET", url, params, self._read(), expect=REFUSALS)
                objects = [self._object(entity, item) for item in self._data(reply, body)]
                link = body.get("$next") if isinstance(body, dict) else None
                next_url = link if isinstance(link, str) and objects else ""
                del reply, body  # the page's bytes and envelope: its objects are enough
                yield SnapshotPage(entity, objects, resume=entity if next_url else following)
                del objects  # the next page, of this list or the next, is fetched without it
                if not next_url:
                    break
                url, params = next_url, None

    def _object(self, entity: str, item: object) -> SnapshotObject:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise MalformedPageError(f"source {self.name!r}: a {entity} without an id")
        return SnapshotObject(item["id"], item, _person_of(entity, item["id"], item))

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
            person_id=_person_of(entity, entity_id, data),
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
        return entity, op  # type: ignore[return-value]


def pattern_problem(pattern: str) -> str | None:
    """Edlink rule events are ``<entity>.<op>``, e.g. ``person.created``."""
    entity, _, op = pattern.partition(".")
    if entity and op in OPS:
        return None
    return f"{pattern!r} is not an Edlink event type like 'person.created'"


def _resume_index(kinds: list[str], resume: str) -> int:
    if resume == SNAPSHOT_DONE:
        return len(kinds)
    if resume not in kinds:
        raise FatalError(f"cannot resume an Edlink snapshot at {resume!r}")
    return kinds.index(resume)


def _person_of(entity: str, entity_id: str, data: dict[str, Any]) -> str | None:
    if entity == "person":
        return entity_id
    person = data.get("person_id")
    return person if isinstance(person, str) else None


def create(settings: SourceSettings) -> EdlinkSource:
    if not isinstance(settings, Settings):
        raise ConfigError("", f"sources.{settings.name}", "not Edlink settings")
    return EdlinkSource(settings)
