"""DreamApply journal (SPEC 2.1): ``/journal`` paged by event id, oldest first."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from edsync import jsontext
from edsync.errors import ConfigError, InvalidEventError, UnreadableJsonError
from edsync.http import HttpClient, Reply, Target
from edsync.model import (
    UNKNOWN_ENTITY,
    Bounds,
    Change,
    Cursor,
    Op,
    RawEvent,
    RawJson,
    RawPage,
    Ref,
    Refreshed,
    SnapshotPage,
    dump_json,
)
from edsync.normalize import utc_timestamp
from edsync.pages import by_cursor
from edsync.settings import Duration, Secret, SourceSettings, WebhookSettings
from edsync.sources.dreamapply.journal_page import lone_event, read_page
from edsync.sources.dreamapply.links import application_id, link_id, own_id, refreshes
from edsync.sources.dreamapply.resources import SNAPSHOT_ENTITIES, Resources

if TYPE_CHECKING:
    from edsync.sources.base import Refresher, Snapshotter
    from edsync.sources.dreamapply.snapshot import Snapshot

log = structlog.get_logger("edsync.dreamapply")

PERSON_ENTITY = "applicant"
JOURNAL_RETENTION = 183 * 86400.0  # the journal keeps 6 months
SERVER_MAX_PAGE = 1024
SERVER_MAX_EXPANDED_PAGE = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SourceSettings):
    api_key: Secret
    # The version these rules follow: unversioned may mean v3, which has no
    # purged-resources and no offer types (help.dreamapply.com/api).
    api_prefix: str = "/api/v9"
    max_requests_per_minute: int = 180
    interval: Duration = Duration(60.0)
    page_size: int = 1024
    expand: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    new_events: list[str] = field(default_factory=list)
    snapshot: bool = True
    purge_interval: Duration = Duration(3600.0)
    resync: str = "auto"
    webhook: WebhookSettings | None = None  # its webhooks wake the poll (SourceSettings.hook)

    def check(self) -> tuple[str, str] | None:
        if not 1 <= self.page_size <= SERVER_MAX_PAGE:
            return "page_size", f"must be between 1 and {SERVER_MAX_PAGE}"
        if self.max_requests_per_minute < 0:
            return "max_requests_per_minute", "must be 0 (no pacing) or more"
        if not self.api_prefix.startswith("/"):
            return "api_prefix", "must start with '/', e.g. '/api/v9'"
        if self.purge_interval <= 0:
            return "purge_interval", 'must be a positive duration, e.g. "1h"'

        if self.resync not in ("auto", "manual"):
            return "resync", 'must be "auto" or "manual"'
        for name in self.events:
            # A typo would filter the journal down to nothing, silently.
            if pattern_problem(name) is not None and name not in self.new_events:
                return "events", (
                    f"{name!r} is not a DreamApply journal event name; list a name "
                    "DreamApply added since in `new_events` too"
                )
        for name in self.new_events:
            if not name.strip() or "," in name:
                return "new_events", f"{name!r} is not an event name (empty or has a comma)"
        return None


@dataclass(frozen=True, slots=True)
class EventKind:
    entity: str
    op: Op
    revive: bool = False


def _kinds(entity: str, op: Op, *names: str) -> dict[str, EventKind]:
    return {name: EventKind(entity, op) for name in names}


# Every name of DreamApply's journal list. Names ending in ": ?" carry a status.
EVENT_KINDS: dict[str, EventKind] = {
    **_kinds("applicant", "created", "Applicant registered"),
    **_kinds(
        "applicant",
        "updated",
        "Applicant decision: ?",
        "Applicant email was changed",
        "Applicant was transferred to another DreamID identity",
    ),
    **_kinds("applicant", "deleted", "Applicant was deleted"),
    **_kinds("applicant", "forgotten", "Applicant requested to be forgotten"),
    **_kinds(
        "application", "created", "Application was created", "Application was created by cloning"
    ),
    **_kinds(
        "application",
        "updated",
        "Application was edited",
        "Course was added to application",
        "Course was removed from application",
        "Application was submitted",
        "Application was re-submitted",
        "Application was flagged",
        "Application was un-flagged",
        "Application was reopened",
        "Application was silenced",
        "Application was un-silenced",
        "Application was frozen",
        "Application was defrosted",
        "Application was migrated",
        "Application was withdrawn",
        "Application was marked as inactive",
        "Referee was added to an application",
        "Referee was removed from an application",
        "Application was shared with: ?",
        "Application share was revoked",
    ),
    "Application was reverted": EventKind("application", "updated", revive=True),
    **_kinds("application", "deleted", "Application was closed"),
    **_kinds("offer", "updated", "Offer was edited: ?", "Offer was confirmed: ?"),
    **_kinds("document", "created", "Document was uploaded", "Document was uploaded to a task"),
    **_kinds("media", "created", "Media was uploaded", "Media was added"),
    **_kinds("media", "deleted", "Media was removed"),
    **_kinds("interview", "created", "Interview was started"),
    **_kinds("interview", "updated", "Interview was completed", "Interview was evaluated"),
    **_kinds("referee", "created", "Referee was invited"),
    **_kinds("referee", "updated", "Referee was reminded", "Referee committed reference"),
    **_kinds("invoice", "created", "Invoice was issued"),
    **_kinds("invoice", "updated", "Invoice was reminded", "Invoice was marked as paid"),
    **_kinds(
        "task",
        "updated",
        "Task was committed as: ?",
        "Task was resolved as: ?",
        "Task was commented",
    ),
}

_STATUS_PREFIXES = {name[: -len(" ?")]: name for name in EVENT_KINDS if name.endswith(": ?")}
_QUOTES = "\"'“”‘’"  # noqa: RUF001 - DreamApply's docs use curly quotes too
# The link fields a journal item has (JournalItem.php; administrator lately).
LINK_FIELDS = frozenset(
    {
        "applicant",
        "application",
        "course",
        "institution",
        "invoice",
        "offer",
        "document",
        "flag",
        "tracker",
        "administrator",
    }
)


def parse_name(name: str) -> tuple[EventKind, str | None] | None:
    """``'Offer was edited: "Enrolled"'`` → (offer/updated, ``"Enrolled"``)."""
    kind = EVENT_KINDS.get(name)
    if kind is not None and not name.endswith(": ?"):
        return kind, None
    head, sep, rest = name.partition(":")
    wildcard = _STATUS_PREFIXES.get(head + sep)
    if wildcard is None:
        return None
    status = rest.strip().strip(_QUOTES).strip()
    return EVENT_KINDS[wildcard], (status or None)


def pattern_problem(pattern: str) -> str | None:
    """A rule's ``event`` must be a journal name, ``?`` or a status allowed."""
    head, sep, _ = pattern.partition(":")
    if sep and head + sep in _STATUS_PREFIXES:
        return None
    if not sep and pattern.strip() in EVENT_KINDS:
        return None
    return f"{pattern!r} is not a DreamApply journal event name"


# An event is read for the few fields normalizing needs (journal_page splits
# the page into each event's text): its text is what the ledger stores.
_Fields = msgspec.defstruct(
    "_Fields",
    [
        ("event", Any, None),
        ("logged", Any, None),
        *(
            (name, msgspec.Raw, None)
            for name in sorted(LINK_FIELDS | {k.entity for k in EVENT_KINDS.values()})
        ),
    ],
)
_FIELDS = msgspec.json.Decoder(_Fields)
# What reading an event's fields raises for JSON no parser here builds.
_UNREADABLE = (msgspec.DecodeError, jsontext.NotJsonError, jsontext.TooDeepError)


def _fields(body: object) -> tuple[Any, RawJson]:
    """The fields normalizing reads of an event (a ``RawJson``, or a parsed
    value: a quarantined event retried), and the event as text."""
    text = body if isinstance(body, RawJson) else RawJson(dump_json(body))
    try:
        return _FIELDS.decode(text.text), text
    except msgspec.ValidationError:
        kind = type(jsontext.loads(text.text)).__name__
        raise InvalidEventError(f"event is not an object but {kind}") from None
    except msgspec.DecodeError:
        fixed = jsontext.scrub(text.text)
        if fixed is text.text:
            raise
    # A lone surrogate escape is valid JSON msgspec refuses: its fields are read
    # with U+FFFD in its place; the text, as sent, is what the ledger keeps.
    return _FIELDS.decode(fixed), text


def _person_of(body: object) -> str | None:
    """The applicant an event names, as far as it can be read at all."""
    try:
        return link_id(_fields(body)[0].applicant)
    except (InvalidEventError, *_UNREADABLE, RecursionError):
        return None


class DreamApplySource:
    kind = "dreamapply"
    person_entity = PERSON_ENTITY
    retention = JOURNAL_RETENTION

    @property
    def snapshot_entities(self) -> tuple[str, ...]:
        """The kinds the snapshot reads in full: invoices too once their list
        was read (a server without it leaves them to the refresh)."""
        listed = self._snapshot is not None and self._snapshot.invoices_listed
        return (*SNAPSHOT_ENTITIES, "invoice") if listed else SNAPSHOT_ENTITIES

    def __init__(self, settings: Settings, http: HttpClient | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.http = http or HttpClient(
            Target.source(settings.name),
            settings.base_url,
            headers={"Authorization": f'DREAM apikey="{settings.api_key.reveal()}"'},
            timeout=settings.timeout,
            retry_for=settings.retry_for,
            ca_bundle=settings.ca_bundle,
            per_minute=settings.max_requests_per_minute,
            credential=settings.api_key,
        )
        self.prefix = settings.api_prefix.rstrip("/")
        self.path = f"{self.prefix}/journal"
        self._resources = Resources(self.name, self.http, self.prefix)
        self._snapshot: Snapshot | None = None
        # Without a snapshot to resync from, a gap can only be reset by a human.
        self.resync = settings.resync if settings.snapshot else "manual"
        cap = SERVER_MAX_EXPANDED_PAGE if settings.expand else SERVER_MAX_PAGE
        self.limit = min(settings.page_size, cap)
        self._unknown_logged: set[str] = set()
        # API v9 requires byEvents (HEAD too): the configured names, or all of them.
        names = [*(settings.events or EVENT_KINDS), *settings.new_events]
        self.by_events = ",".join(dict.fromkeys(names))

    @property
    def snapshotter(self) -> Snapshotter | None:
        """The list endpoints' snapshot (``head`` … ``snapshot`` below), unless the
        settings turn it off (``snapshot = false``)."""
        return self if self.settings.snapshot else None

    @property
    def refresher(self) -> Refresher:
        """Records come from the resources the journal names (``refresh`` below)."""
        return self

    # DreamApply keeps a deleted applicant's invoices, detached (SPEC 5.4).
    outlives_person: tuple[str, ...] = ("invoice",)

    @property
    def purge_interval(self) -> float:
        return float(self.settings.purge_interval)

    def refresh(self, refs: Sequence[Ref]) -> Iterator[Refreshed]:
        return self._resources.refresh(refs)

    def purged(self) -> Iterator[list[Refreshed]]:
        return (gone for gone, _ in self._resources.purged())

    def close(self) -> None:
        self.http.close()

    def _params(
        self, start: str | None, bounds: Bounds, limit: int | None = None
    ) -> dict[str, str]:
        params = {"order": "oldest-first", "limit": str(limit or self.limit)}
        if start is not None:
            params["bySince"] = start
        if bounds.until is not None:
            params["byUntil"] = bounds.until
        params["byEvents"] = self.by_events
        if self.settings.expand:
            params["expand"] = ",".join(self.settings.expand)
        return params

    @staticmethod
    def _start(cursor: Cursor | None, bounds: Bounds) -> str | None:
        # A stored cursor wins over --since: resuming must not skip or repeat.
        if cursor is not None:
            return str(cursor.position + 1)
        return bounds.since

    def head(self) -> str | None:
        """The newest journal id among the ``events`` asked for, or None if there is none."""
        params = {"order": "newest-first", "limit": "1", "byEvents": self.by_events}
        try:
            events = self.http.fetch("GET", self.path, params, partial(self._read_page, -1))
        except UnreadableJsonError as exc:  # its id is all a head needs
            return lone_event(exc.text, -1, self._target).event_id
        return max((e.event_id for e in events), key=int, default=None)

    def after_snapshot(self, head: str | None, base: int) -> Cursor:
        position = max(int(head), base) if head is not None else base
        return Cursor(str(position), position)

    def snapshot(self, resume: str | None = None) -> Iterator[SnapshotPage]:
        from edsync.sources.dreamapply.snapshot import Snapshot

        self._snapshot = Snapshot(self.name, self.http, self.prefix)
        return self._snapshot.pages(resume)

    def probe(self) -> str:
        reply = self.http.once("HEAD", self.path, self._params(None, Bounds()))
        return f"{reply.headers.get('X-Count', '?')} events upstream"

    def pending(self, cursor: Cursor | None, bounds: Bounds) -> int | None:
        reply = self.http.request(
            "HEAD", self.path, self._params(self._start(cursor, bounds), bounds)
        )
        count = reply.headers.get("X-Count")
        return int(count) if count is not None and count.isdigit() else None

    def pages(self, cursor: Cursor | None, bounds: Bounds) -> Iterator[RawPage]:
        # The server caps `limit` silently: only an empty page means the end.
        # Ids jump over the events byEvents hides: a jump is no gap (SPEC 2.1).
        start = (self._start(cursor, bounds), cursor.position if cursor is not None else 0)
        read = partial(self._fetch, bounds)
        for events in by_cursor(read, start, _after, self.limit, self._isolate):
            last = events[-1].position
            spent = self.http.spent
            yield RawPage(list(events), Cursor(str(last), last), spent.network, spent.read)

    def _fetch(self, bounds: Bounds, at: tuple[str | None, int], limit: int) -> list[RawEvent]:
        """The events from ``at`` (``bySince``, and the id they must be past), at
        most ``limit``; parsed inside the retries, so a truncated or malformed
        page is retried too."""
        since, floor = at
        params = self._params(since, bounds, limit)
        return self.http.fetch("GET", self.path, params, partial(self._read_page, floor))

    def _isolate(self, at: tuple[str | None, int], error: UnreadableJsonError) -> RawEvent:
        """The event of a page of limit 1 that no parser reads, to be quarantined."""
        return lone_event(error.text, at[1], self._target)

    @property
    def _target(self) -> str:
        return f"source {self.name!r}"

    def _read_page(self, floor: int, reply: Reply) -> list[RawEvent]:
        return self._parse_page(reply.body, floor)

    def _parse_page(self, page: bytes, floor: int) -> list[RawEvent]:
        """The page's events after ``floor``, oldest first, each body the event's
        own JSON text (``page``: the reply's body)."""
        return read_page(page, floor, self._target)

    def normalize(self, raw: RawEvent) -> Change:
        try:
            return self._normalize(raw)
        except (*_UNREADABLE, RecursionError) as exc:
            # Valid JSON a parser here cannot build (nesting past msgspec's depth):
            # the page was read, so only this event is quarantined, naming its
            # person still, so an erasure finds it.
            raise InvalidEventError(
                f"event holds a value edsync cannot read: {exc}", person_id=_person_of(raw.body)
            ) from None

    def _normalize(self, raw: RawEvent) -> Change:
        fields, _ = _fields(raw.body)
        # Every quarantined event names its person, so an erasure finds it.
        name = fields.event
        if not isinstance(name, str) or not name:
            raise InvalidEventError(
                "event has no `event` name", person_id=link_id(fields.applicant)
            )
        try:
            occurred_at = utc_timestamp(fields.logged)
        except InvalidEventError as exc:
            raise InvalidEventError(str(exc), person_id=link_id(fields.applicant)) from None
        parsed = parse_name(name)
        if parsed is None:
            person_id = link_id(fields.applicant)
            self._log_unknown(name)
            return Change(
                event_id=raw.event_id,
                position=raw.position,
                type=name,
                entity=UNKNOWN_ENTITY,
                entity_id=None,
                op=None,
                occurred_at=occurred_at,
                payload=raw.body,
                person_id=person_id,
                record=False,
                refresh=refreshes(
                    UNKNOWN_ENTITY, fields, person_id, application_id(fields.application)
                ),
            )
        kind, status = parsed
        application = application_id(fields.application)
        entity_id = application if kind.entity == "application" else own_id(kind.entity, fields)
        # An applicant's own event names them by its own id: one read, not two.
        person_id = entity_id if kind.entity == "applicant" else link_id(fields.applicant)
        refresh = refreshes(kind.entity, fields, person_id, application)
        if entity_id is None and not refresh:
            named = dict.fromkeys((kind.entity, "application", "applicant"))
            raise InvalidEventError(
                f"{name!r} names no {', '.join(named)} to read".replace(
                    ", applicant", " or applicant"
                ),
                person_id=person_id,
            )
        return Change(
            event_id=raw.event_id,
            position=raw.position,
            type=name,
            entity=kind.entity,
            entity_id=entity_id,
            op=kind.op,
            occurred_at=occurred_at,
            payload=raw.body,
            status=status,
            person_id=person_id,
            revive=kind.revive,
            record=False,
            refresh=refresh,
        )

    def _log_unknown(self, name: str) -> None:
        if name not in self._unknown_logged:
            self._unknown_logged.add(name)
            log.warning("unknown_event_name", source=self.name, event_name=name)


def _after(event: RawEvent) -> tuple[str, int]:
    """Where the journal goes on after ``event``: ``bySince``, and the id the
    next page's events must be past."""
    return str(event.position + 1), event.position


def create(settings: SourceSettings) -> DreamApplySource:
    if not isinstance(settings, Settings):  # the registry pairs them; guard anyway
        raise ConfigError("", f"sources.{settings.name}", "not DreamApply settings")
    return DreamApplySource(settings)
