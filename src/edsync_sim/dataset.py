"""A deterministic, growing DreamApply journal, and the resources it talks about.

Applicants arrive over time and live through a story (applications, documents,
referees, tasks, interviews, invoices, offers, decisions); many stories run at
once so their events interleave as in a real journal. Everything is drawn from
one ``random.Random(seed)``, and generation is incremental, so
``Journal(n + m)`` and ``Journal(n)`` followed by ``append(m)`` produce
byte-identical events.

The journal says what changed, the resources say what it is (SPEC 2.1). Each
event keeps, for every expandable link it carries, the entity's state at that
moment (serialized once per version and shared between events), so ``expand``
shows history as it was, not as it is now. As the vendor prints them, an
expanded application, offer or document carries no ``id`` (an application
names it in its own sub-links); an applicant or invoice does.

The ``Registry`` keeps every resource as it is now (applicants, applications,
and their offers, tasks, references, documents and invoices, each with its
own id), and what was purged, for the resource and list endpoints: a client
can mirror them and find its copy consistent with the journal
(``Journal.current()`` is the oracle of that state, ``Journal.truth()`` the
oracle of the journal's history). Some changes the journal does not spell
out, as upstream: which of an application's tasks or references an event
changed (its item names only the application: JournalItem.php has no task or
referee field), an academic term's purge (``Journal.purge_term``, no event)
and the confirmation of a request to be forgotten (``Journal.confirm_forget``,
and the generator's own, 300 to 3000 events after the request; no event).

Shapes follow ``tests/contract/dreamapply/resources.py`` (help.dreamapply.com
API v9 and the vendor SDK's models). Resources link to each other in the v9
spelling (``/api/v9/applications/60/offers``); a journal item's own link
fields keep the unversioned spelling of the journal's documentation
(``/api/applications/60``).
"""

from __future__ import annotations

import gc
import heapq
import random
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

__all__ = [
    "ACADEMIC_TERMS",
    "API_V9",
    "CHILD_KINDS",
    "DEFAULT_START",
    "EVENT_NAMES",
    "EXPANDABLE",
    "FIRST_IDS",
    "JOURNAL_LINKS",
    "OFFER_STATUSES",
    "OFFER_TYPES",
    "OFFER_TYPES_PATH",
    "RECORD_KINDS",
    "STATUS_NAMES",
    "CurrentState",
    "Entity",
    "EntityTruth",
    "Journal",
    "Purge",
    "Registry",
    "canonical_name",
    "offer_status",
    "strip_status",
]

DEFAULT_START = datetime(2026, 6, 1, 8, 0, 0, tzinfo=UTC)

# How resources spell their links to each other (help.dreamapply.com, API v9).
API_V9 = "/api/v9"

# The 48 names of DreamApply's list; "?" stands for the status the name carries.
EVENT_NAMES: tuple[str, ...] = (
    "Applicant registered",
    "Applicant was deleted",
    "Applicant decision: ?",
    "Applicant requested to be forgotten",
    "Applicant email was changed",
    "Applicant was transferred to another DreamID identity",
    "Application was created",
    "Application was created by cloning",
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
    "Application was closed",
    "Application was reverted",
    "Application was marked as inactive",
    "Referee was added to an application",
    "Referee was removed from an application",
    "Application was shared with: ?",
    "Application share was revoked",
    "Offer was edited: ?",
    "Offer was confirmed: ?",
    "Document was uploaded",
    "Document was uploaded to a task",
    "Media was uploaded",
    "Media was added",
    "Media was removed",
    "Interview was started",
    "Interview was completed",
    "Interview was evaluated",
    "Referee was invited",
    "Referee was reminded",
    "Referee committed reference",
    "Invoice was issued",
    "Invoice was reminded",
    "Invoice was marked as paid",
    "Task was committed as: ?",
    "Task was resolved as: ?",
    "Task was commented",
)

# Prefixes (up to and including ": ") of the names that carry a status.
STATUS_NAMES: frozenset[str] = frozenset(n[:-1] for n in EVENT_NAMES if n.endswith(": ?"))

EXPANDABLE: frozenset[str] = frozenset({"applicant", "application", "offer", "invoice", "document"})

# The link fields a journal item carries (the vendor SDK's JournalItem.php, and
# administrator lately): referees, tasks, interviews and media have none.
JOURNAL_LINKS: frozenset[str] = frozenset(
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

# What a mirror holds as records (SPEC 2.1), and which of them hang off an application.
RECORD_KINDS: tuple[str, ...] = (
    "applicant",
    "application",
    "offer",
    "task",
    "reference",
    "document",
    "invoice",
)
CHILD_KINDS: tuple[str, ...] = ("offer", "task", "reference", "document", "invoice")

# Academic terms by id: /applications is read per term (byAcademicTermID).
ACADEMIC_TERMS: dict[int, tuple[int, str]] = {
    id_: (year, term)
    for id_, (year, term) in enumerate(
        ((year, term) for year in range(2026, 2030) for term in ("Spring", "Autumn")), start=1
    )
}
_TERM_IDS = {value: id_ for id_, value in ACADEMIC_TERMS.items()}

OFFER_STATUSES = (
    "Offered",
    "Conditional",
    "Unconditional",
    "Accepted",
    "Rejected",
    "Enrolled",
    "Waitlisted",
)

# DreamApply's offers carry no status: a link to their type, whose title is it.
# The v9 pages print type links with /api/v4/ (resources.OFFER_TYPE_LINK); the
# list itself is served under /api/vN for N >= 4 only.
OFFER_TYPES_PATH = "/api/v4/applications/offers/types"
OFFER_TYPES: dict[int, str] = dict(enumerate(OFFER_STATUSES, start=1))
_OFFER_TYPE_LINKS = {title: f"{OFFER_TYPES_PATH}/{id_}" for id_, title in OFFER_TYPES.items()}

# Offer status walk: each status's possible successors with weights; None ends it.
_OFFER_NEXT: dict[str, tuple[tuple[str | None, ...], tuple[int, ...]]] = {
    "Offered": (("Conditional", "Unconditional", "Accepted", "Rejected"), (30, 40, 20, 10)),
    "Conditional": (("Unconditional", "Accepted", "Rejected"), (60, 20, 20)),
    "Unconditional": (("Accepted", "Rejected"), (75, 25)),
    "Waitlisted": (("Offered", "Rejected"), (50, 50)),
    "Accepted": (("Enrolled", None), (85, 15)),
}

_FIRST_NAMES = (
    ("Mari", "mari"),
    ("Jaan", "jaan"),
    ("Liis", "liis"),
    ("Jürgen", "jurgen"),
    ("Zoë", "zoe"),
    ("Siobhán", "siobhan"),
    ("Łukasz", "lukasz"),
    ("Åsa", "asa"),
    ("José", "jose"),
    ("Amara", "amara"),
    ("Wei", "wei"),
    ("Priya", "priya"),
    ("Olusegun", "olusegun"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Aino", "aino"),
)
_LAST_NAMES = (
    ("Tamm", "tamm"),
    ("Saar", "saar"),
    ("Müller", "muller"),
    ("Ó Briain", "obriain"),
    ("Kowalski", "kowalski"),
    ("García", "garcia"),
    ("Okafor", "okafor"),
    ("Zhang", "zhang"),
    ("Sharma", "sharma"),
    ("Virtanen", "virtanen"),
    ("Smith", "smith"),
    ("Lindqvist", "lindqvist"),
)
_CITIZENSHIPS = ("EE", "FI", "LV", "LT", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "IN", "NG", "CN")
_COURSES = (
    (11, "Computer Science MSc"),
    (12, "Data Science MSc"),
    (13, "Software Engineering BSc"),
    (14, "Business Administration BA"),
    (15, "International Relations MA"),
    (16, "Biomedicine MSc"),
    (17, "Physics BSc"),
    (18, "Architecture MA"),
)
_DOCUMENT_TYPES = ("Passport", "Transcript", "Diploma", "CV", "Motivation letter", "Photo")
_SHARE_EMAILS = ("agent@example.org", "counsellor@school.example.org", "parent@example.net")
# A task's class, title and the status it starts in (help .../api_applications_id_tasks_id).
_TASK_CLASSES = (
    ("checklist-passport", "Passport or ID card", "I have NOT yet attached my passport/ID card"),
    (
        "checklist-language-english",
        "Proof of English language proficiency",
        "I have NOT yet taken a language test",
    ),
    ("checklist-transcript", "Official transcript", "I have NOT yet requested my transcript"),
    ("checklist-portfolio", "Portfolio", "I have NOT yet uploaded my portfolio"),
)
_TASK_PENDING = ("Pending", "Submitted", "In review")
_TASK_DONE = ("Done", "Approved", "Completed")
# The sections of an application's contents (Application.php) besides its profile.
_SECTIONS = (
    "legal",
    "contact",
    "home",
    "host",
    "education",
    "grades",
    "languages",
    "career",
    "activities",
    "residences",
    "motivation",
    "visa",
    "misc",
    "extras",
)
_EMPTY_SECTIONS: dict[str, object] = {section: {} for section in _SECTIONS}
# An application's collections, in the vendor's order; "exports" is never expanded.
_APPLICATION_LINKS = (
    "flags",
    "courses",
    "offers",
    "exports",
    "documents",
    "scores",
    "tasks",
    "references",
)
# An applicant's collection links (help .../api_applicants_id).
_APPLICANT_LINKS = (
    "applications",
    "trackers",
    "photo",
    "consents",
    "invoices",
    "wishes",
    "documents",
)

# First ids per entity: distinct ranges make a consumer that mixes up ids fail
# loudly. Ids are unique per kind across the whole dataset (not per application).
FIRST_IDS = {
    "applicant": 1001,
    "application": 20001,
    "offer": 50001,
    "document": 70001,
    "media": 90001,
    "interview": 110001,
    "reference": 130001,
    "invoice": 150001,
    "task": 170001,
}

# Concurrent stories: enough to interleave applicants realistically.
_MIN_ACTIVE = 5
_MAX_ACTIVE = 40
_NEW_STORY_CHANCE = 1 / 25
# About one event in 500 is a request to be forgotten. An administrator
# confirms it (a purge with no journal event) this many events later: at least
# the minimum, plus up to the spread, so a journal of 20 000 events holds
# requests confirmed and requests still pending.
_FORGET_CHANCE = 1 / 500
_FORGET_REVIEW_MIN = 300
_FORGET_REVIEW_SPREAD = 2700
# Rare branches are forced early (after a natural warm-up) so that a modest
# journal already holds all 48 names.
_COVERAGE_AFTER = 100
_COVERAGE_CHANCE = 0.5

# Follow-up names a branch unlocks: while one is missing the branch is boosted.
_REFEREE_NAMES = (
    "Referee was removed from an application",
    "Referee was invited",
    "Referee was reminded",
    "Referee committed reference",
)
_TASK_NAMES = (
    "Document was uploaded to a task",
    "Task was commented",
    "Task was resolved as: ?",
)
_INTERVIEW_NAMES = ("Interview was completed", "Interview was evaluated")
_INVOICE_NAMES = ("Invoice was reminded", "Invoice was marked as paid")

# Batches at least this large are generated with the cyclic GC paused.
_GC_PAUSE_FROM = 1000

_TRAILING_INT = re.compile(r"(\d+)/*$")
_STATUS_TERM = re.compile(r"^(.*?: )(.+)$", re.DOTALL)

Json = dict[str, object]


def strip_status(status: str) -> str:
    """The status without surrounding straight or typographic quotes."""
    return status.strip().strip('"\u201c\u201d').strip()


def canonical_name(name: str) -> str:
    """``Offer was edited: Enrolled`` → ``Offer was edited: "Enrolled"``; others unchanged."""
    match = _STATUS_TERM.match(name)
    if match is None or match.group(1) not in STATUS_NAMES or match.group(2) == "?":
        return name
    return f'{match.group(1)}"{strip_status(match.group(2))}"'


@dataclass(frozen=True, slots=True)
class EntityTruth:
    """What a correct mirror must hold for one entity after the journal so far."""

    deleted: bool = False
    status: str | None = None
    forgotten: bool = False


# A generated event: (logged, name, links in wire order, expandable states at
# that moment). A plain tuple of strings and bytes on purpose: the cyclic GC
# stops tracking exact tuples of atoms, so a journal of 100 000 events costs
# the host process's collector nothing (a class instance would stay tracked).
_Event = tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[str, bytes], ...]]


def _kept(body: bytes) -> bytes:
    """A copy of exactly ``body``'s size, for bytes kept long.

    orjson returns its output buffer shrunk in place; kept by the hundred
    thousand, those make the allocator slower with every one more (about 10
    times at 100 000 kept). A copy lets the buffer go at once.
    """
    return body[:-1] + body[-1:]


def _render_event(event: _Event, expand: frozenset[str]) -> bytes:
    logged, name, links, states = event
    obj: Json = {"logged": logged, "event": name, "bind": []}
    obj.update(links)
    for field, state in states:
        if field in expand:
            obj[field] = orjson.Fragment(state)
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True)
class _RawEvent:
    """An injected event, stored exactly as it will be served."""

    body: bytes
    name: str | None


# Kinds whose object names its own id (help.dreamapply.com prints one); the
# others' ids are their list keys and, for an application, its sub-links.
_OWN_ID = frozenset({"applicant", "task", "reference", "invoice"})


class Entity:
    """One upstream record and its current state.

    ``state`` is the object the journal embeds on ``expand`` (no ``id`` for an
    application, offer or document); ``resource()`` is the object as its own
    endpoint or list serves it. ``link`` is how a journal item names it.

    Registered ones also know their ``owner`` (an application's applicant, a
    child's application; None for an invoice detached by a purge), their
    ``children`` (an applicant's applications, an application's offers),
    ``collections`` (an application's tasks, references, documents and
    invoices by kind), ``extra`` (an application's course and flag
    associations, keyed by the course's or flag's id) and, while purged,
    their ``purge`` entry; a reference the applicant removed is ``removed``.
    When their story ends they are frozen: ``state`` is emptied and ``json()``
    (or ``data()``) is the only view of them left.
    """

    __slots__ = (
        "_json",
        "_static",
        "children",
        "collections",
        "extra",
        "id",
        "kind",
        "link",
        "owner",
        "purge",
        "removed",
        "state",
        "term",
    )

    def __init__(
        self, kind: str, id_: int, link: str, state: Json, static: Json | None = None
    ) -> None:
        self.kind = kind
        self.id = id_
        self.link = link
        self.state: Json = {"id": id_, **state} if kind in _OWN_ID else state
        self._json: bytes | None = None
        # Fields that never change, serialized once: each new version of a big
        # object serializes only ``state`` (generation speed).
        self._static = None if static is None else _kept(orjson.dumps(static))
        self.owner: Entity | None = None
        self.children: list[Entity] | None = None
        self.collections: list[Entity] | None = None
        self.extra: dict[str, dict[int, Json] | bytes] | None = None
        self.purge: Purge | None = None
        self.removed = False
        self.term: int | None = None  # an application's academic term id

    @property
    def live(self) -> bool:
        """Served now: neither it nor, for an application's child, its application purged.

        An invoice outlives its applicant (detached: the vendor keeps accounting
        records); a removed reference is gone.
        """
        if self.kind == "invoice":
            return True
        if self.kind in CHILD_KINDS:
            return not self.removed and self.owner is not None and self.owner.purge is None
        return self.purge is None

    def members(self, kind: str) -> Sequence[Entity]:
        """An application's children of one kind, in id order (an applicant's applications)."""
        if kind in ("offer", "application"):
            return self.children or ()
        return [child for child in self.collections or () if child.kind == kind]

    def update(self, **changes: object) -> None:
        if not self.state and self._json is not None:  # frozen: thaw, the whole object
            self.state = orjson.loads(self._json)
            self._static = None
        self.state.update(changes)
        self._json = None

    def json(self) -> bytes:
        """The state serialized now: events keep these bytes, so history stays as it was."""
        if self._json is None:
            body = orjson.dumps(self.state)
            static = self._static
            if static is None:
                body = _kept(body)
            else:
                body = body[:-1] + b"," + static[1:] if len(body) > 2 else static
            self._json = body
        return self._json

    def resource(self) -> bytes:
        """The object as its endpoint or its application's collection serves it: with
        its ``id`` first (an application's own GET; a list item of offers, tasks,
        references, documents); a document's ``size`` as the v9 list prints it."""
        if self.kind == "document":
            data = self.data()
            return orjson.dumps(
                {
                    "id": self.id,
                    "uploaded": data["uploaded"],
                    "name": data["name"],
                    "mime": data["mime"],
                    "size": str(data["size"]),
                }
            )
        body = self.json()
        if self.kind in _OWN_ID:
            return body
        return b'{"id":%d,%b' % (self.id, body[1:])

    def data(self) -> Json:
        """A private copy of the current state, frozen or not."""
        parsed: Json = orjson.loads(self.json())
        return parsed

    def freeze(self) -> None:
        """It will never change again: keep the serialized state (the journal's
        events share those bytes) and let the dicts go: most of what keeping
        every entity would cost (bytes are no work for the cyclic GC either)."""
        self.json()
        self.state = {}
        extra = self.extra
        if extra is not None:
            self.extra = {name: association_json(value) for name, value in extra.items()}

    def associations(self, name: str) -> bytes:
        """An application's ``courses`` or ``flags``: associations keyed by the
        course's or flag's id, as their list serves them (``{}`` when none)."""
        value = None if self.extra is None else self.extra.get(name)
        if value is None:
            return b"{}"
        return association_json(value)


@dataclass(frozen=True, slots=True)
class Purge:
    """An entry of ``/purged-resources``: which resource left the lists, when and why.

    ``requested``: when a request to be forgotten was made (for ``forgotten``).
    """

    number: int
    entity: Entity
    reason: str  # "deleted" | "forgotten" | "closed" | "term"
    purged: str  # ``logged`` of the event that removed it, or the clock then
    requested: str | None = None


class Registry:
    """Every resource ever generated, and what is purged now.

    Ids of a kind are consecutive from ``FIRST_IDS[kind]``, so ``entities(kind)``
    is in ascending id order and indexed by ``id - FIRST_IDS[kind]``. Purge
    numbers follow the order of the removals and are never reused; a revert
    drops its entry. ``forget_requests``: applicant id → when they asked to be
    forgotten, while no administrator has confirmed it. Generation mutates all
    this: read it with the journal's lock held.
    """

    __slots__ = ("_by_kind", "_next_purge", "forget_requests", "purges")

    def __init__(self) -> None:
        self._by_kind: dict[str, list[Entity]] = {kind: [] for kind in RECORD_KINDS}
        self.purges: dict[int, Purge] = {}  # ascending numbers, as inserted
        self.forget_requests: dict[int, str] = {}
        self._next_purge = 1

    def entities(self, kind: str) -> Sequence[Entity]:
        return self._by_kind[kind]

    def get(self, kind: str, id_: int) -> Entity | None:
        entities = self._by_kind.get(kind)
        if entities is None:
            return None
        index = id_ - FIRST_IDS[kind]
        return entities[index] if 0 <= index < len(entities) else None

    def add(self, entity: Entity, owner: Entity | None = None) -> None:
        entities = self._by_kind[entity.kind]
        assert entity.id == FIRST_IDS[entity.kind] + len(entities), "ids must stay consecutive"
        entities.append(entity)
        if owner is None:
            return
        entity.owner = owner
        if entity.kind in ("application", "offer"):
            if owner.children is None:
                owner.children = [entity]
            else:
                owner.children.append(entity)
            return
        if owner.collections is None:
            owner.collections = [entity]
        else:
            owner.collections.append(entity)

    def remove_reference(self, reference: Entity) -> None:
        """The applicant took the referee off the application: gone from its collection."""
        reference.removed = True
        owner = reference.owner
        if owner is not None and owner.collections is not None:
            owner.collections.remove(reference)

    def request_forget(self, applicant: Entity, logged: str) -> None:
        self.forget_requests.setdefault(applicant.id, logged)

    def remove_applicant(
        self, applicant: Entity, reason: str, logged: str, requested: str | None = None
    ) -> None:
        """Deleted or forgotten: the applicant and every application still listed go;
        their invoices stay, detached (help .../api_applications_id_invoices_id)."""
        pending = self.forget_requests.pop(applicant.id, None)
        if reason == "forgotten":
            requested = requested or pending or logged
        self._purge(applicant, reason, logged, requested)
        for application in applicant.children or ():
            _detach_invoices(application)
            if application.purge is None:
                self._purge(application, reason, logged, requested)

    def purge_application(self, application: Entity, reason: str, logged: str) -> bool:
        """A purge of the application alone (a term's cleanup); False if already purged."""
        if application.purge is not None:
            return False
        _detach_invoices(application)
        self._purge(application, reason, logged, None)
        return True

    def close(self, application: Entity, logged: str) -> None:
        if application.purge is None:
            self._purge(application, "closed", logged, None)

    def revert(self, application: Entity) -> None:
        purge = application.purge
        if purge is not None and purge.reason == "closed":
            del self.purges[purge.number]
            application.purge = None

    def _purge(self, entity: Entity, reason: str, logged: str, requested: str | None) -> None:
        number = self._next_purge
        self._next_purge = number + 1
        entity.purge = self.purges[number] = Purge(number, entity, reason, logged, requested)


def association_json(value: dict[int, Json] | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if not value:
        return b"{}"
    return _kept(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def _detach_invoices(application: Entity) -> None:
    """What a GDPR purge leaves of an application's invoices: no applicant, no application."""
    for invoice in application.members("invoice"):
        if invoice.owner is not None:
            invoice.owner = None
            invoice.update(applicant=None, application=None, payer={"name": None, "email": None})


def offer_status(offer: Json) -> str | None:
    """The title of an offer's type: the status the journal's names carry."""
    type_id = _link_id(offer.get("type"))
    return None if type_id is None else OFFER_TYPES.get(type_id)


@dataclass(frozen=True, slots=True)
class CurrentState:
    """What a correct, complete mirror must hold now.

    ``records``: ``(entity, id)`` → the object as its own endpoint (applicant,
    application, invoice) or its application's collection (offer, task,
    reference, document) serves it, with its ``id``, for every live resource
    of ``RECORD_KINDS``; an offer's also has ``"status"``, its type's title.
    ``parents``: ``(entity, id)`` of each child record (offer, task,
    reference, document, invoice) → its application's id (an invoice detached
    by a purge has none: its links are null). ``purged``: ``(entity, id)`` →
    reason (``deleted`` / ``forgotten`` / ``closed`` / ``term``) of every
    applicant and application ``/purged-resources`` lists.
    ``forget_requests``: applicant id → when they asked to be forgotten, for
    requests no administrator confirmed yet (the applicant is still live).
    """

    records: dict[tuple[str, int], Json]
    purged: dict[tuple[str, int], str]
    parents: dict[tuple[str, int], int]
    forget_requests: dict[int, str]


class _Story:
    """One applicant's life in the journal, advanced one event at a time."""

    __slots__ = ("applicant", "events")

    def __init__(self, applicant: Entity, events: Iterator[_Event]) -> None:
        self.applicant = applicant
        self.events = events


class _Generator:
    """The story engine: interleaves many applicant stories on one clock."""

    def __init__(self, seed: int, start: datetime) -> None:
        # Reproducible test data, not security: a seeded PRNG is the point.
        self.rng = random.Random(seed)  # noqa: S311
        self.now = int(start.timestamp())
        self.generated = 0
        self.seen: set[str] = set()
        self.stories: list[_Story] = []
        self.registry = Registry()
        self.next_ids = dict(FIRST_IDS)
        # (events generated when due, applicant id): requests to be forgotten
        # an administrator will confirm.
        self.reviews: list[tuple[int, int]] = []
        self._logged_ts = -1
        self._logged = ""
        self._logged_day: int | None = None
        self._logged_date = ""

    # -- the scheduler ------------------------------------------------------

    def next_event(self) -> _Event:
        if self.generated:
            self.now += self._gap()
        reviews = self.reviews
        while reviews and reviews[0][0] <= self.generated:
            self.confirm_forget(heapq.heappop(reviews)[1])
        while True:
            if self._start_new_story():
                applicant = self._new_applicant()
                story = _Story(applicant, self._applicant_story(applicant))
                self.stories.append(story)
                event = self._advance(story, begun=False)
            else:
                story = self.stories[self.rng.randrange(len(self.stories))]
                event = self._advance(story, begun=True)
            if event is not None:
                self.generated += 1
                if len(self.seen) < len(EVENT_NAMES):
                    self.seen.add(_status_template(event[1]))
                return event

    def _gap(self) -> int:
        # Mostly seconds to minutes apart; some share a second, as upstream.
        if self.rng.random() < 0.1:
            return 0
        return min(1 + int(self.rng.expovariate(1 / 45)), 900)

    def _start_new_story(self) -> bool:
        active = len(self.stories)
        if active < _MIN_ACTIVE:
            return True
        return active < _MAX_ACTIVE and self.rng.random() < _NEW_STORY_CHANCE

    def _advance(self, story: _Story, *, begun: bool) -> _Event | None:
        if begun and self.chance("Applicant requested to be forgotten", _FORGET_CHANCE):
            # A request an administrator reviews: they act no more meanwhile,
            # and are purged (no journal event) when it is confirmed.
            applicant = story.applicant
            self.registry.request_forget(applicant, self._logged_now())
            farewell = self.emit("Applicant requested to be forgotten", applicant)
            self._end(story)
            delay = _FORGET_REVIEW_MIN + self.rng.randrange(_FORGET_REVIEW_SPREAD)
            heapq.heappush(self.reviews, (self.generated + delay, applicant.id))
            return farewell
        event = next(story.events, None)
        if event is None or event[1] == "Applicant was deleted":
            # A deleted applicant's story is over even if it had more to tell.
            self._end(story)
        return event

    def _end(self, story: _Story) -> None:
        """Nothing more will be logged for this applicant: freeze what the registry keeps."""
        self.stories.remove(story)
        applicant = story.applicant
        applicant.freeze()
        for application in applicant.children or ():
            application.freeze()
            for offer in application.children or ():
                offer.freeze()
            for child in application.collections or ():
                child.freeze()

    def end_story_of(self, applicant: Entity) -> None:
        """Stop the story of an applicant purged from outside it, if it still runs."""
        for story in self.stories:
            if story.applicant is applicant:
                self._end(story)
                return

    def confirm_forget(self, applicant_id: int) -> bool:
        """An administrator confirms the erasure: a purge with no journal event."""
        applicant = self.registry.get("applicant", applicant_id)
        if applicant is None or applicant.purge is not None:
            return False
        self.end_story_of(applicant)
        self.registry.remove_applicant(applicant, "forgotten", self._logged_now())
        return True

    def purge_term(self, term_id: int) -> list[int]:
        """The overnight cleanup of an academic term: its live applications purged."""
        purged: list[int] = []
        logged = self._logged_now()
        for application in self.registry.entities("application"):
            if application.term == term_id and application.purge is None:
                self.registry.purge_application(application, "term", logged)
                purged.append(application.id)
                if application.owner is not None:
                    self.end_story_of(application.owner)
        return purged

    def chance(self, name: str, p: float, *unlocks: str) -> bool:
        """A branch taken with probability ``p``, or more often while the names
        it logs (or unlocks further down the story) have not occurred yet."""
        if (
            self.generated >= _COVERAGE_AFTER
            and len(self.seen) < len(EVENT_NAMES)
            and not self.seen.issuperset((name, *unlocks))
        ):
            p = max(p, _COVERAGE_CHANCE)
        return self.rng.random() < p

    # -- building blocks ----------------------------------------------------

    def _logged_now(self) -> str:
        """``now`` as DreamApply logs it (``2026-06-01T08:00:00+00:00``), made
        without a datetime for each second: generation calls this a lot."""
        now = self.now
        if now != self._logged_ts:
            self._logged_ts = now
            day, second = divmod(now, 86400)
            if day != self._logged_day:
                self._logged_day = day
                self._logged_date = datetime.fromtimestamp(day * 86400, UTC).date().isoformat()
            hour, rest = divmod(second, 3600)
            minute, second = divmod(rest, 60)
            self._logged = f"{self._logged_date}T{hour:02d}:{minute:02d}:{second:02d}+00:00"
        return self._logged

    def new_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def emit(
        self,
        name: str,
        applicant: Entity,
        application: Entity | None = None,
        *others: Entity | tuple[str, str],
    ) -> _Event:
        """An event at the current time naming these entities (or extra links)."""
        if application is None:
            links: list[tuple[str, str]] = [("applicant", applicant.link)]
            states: list[tuple[str, bytes]] = [("applicant", applicant.json())]
        else:
            links = [("applicant", applicant.link), ("application", application.link)]
            states = [("applicant", applicant.json()), ("application", application.json())]
        for other in others:
            if isinstance(other, tuple):
                links.append(other)
                continue
            if other.kind not in JOURNAL_LINKS:
                continue  # no such field on a journal item: the event names its application
            links.append((other.kind, other.link))
            if other.kind in EXPANDABLE:
                states.append((other.kind, other.json()))
        return (self._logged_now(), name, tuple(links), tuple(states))

    def _new_applicant(self) -> Entity:
        rng = self.rng
        id_ = self.new_id("applicant")
        given, given_ascii = rng.choice(_FIRST_NAMES)
        family, family_ascii = rng.choice(_LAST_NAMES)
        own = f"{API_V9}/applicants/{id_}"
        applicant = Entity(
            "applicant",
            id_,
            f"/api/applicants/{id_}",
            # help .../api_applicants_id: its fields, then its collections' links.
            {
                "type": "Natural",
                "registered": self._logged_now(),
                "name": {
                    "full": f"{given} {family}",
                    "given": given,
                    "middle": None,
                    "family": family,
                },
                "email": f"{given_ascii}.{family_ascii}.{id_}@example.org",
                "phone": f"+372 5{rng.randrange(100000, 999999)}",
                "reference": None,
                "matriculation": None,
                "citizenship": rng.choice(_CITIZENSHIPS),
                "notes": None,
                **{name: f"{own}/{name}" for name in _APPLICANT_LINKS},
            },
        )
        self.registry.add(applicant)
        return applicant

    def _new_child(
        self,
        kind: str,
        link: str,
        state: Json,
        owner: Entity | None = None,
        static: Json | None = None,
    ) -> Entity:
        """An entity with the next id of its kind; registered under ``owner`` when given."""
        id_ = self.new_id(kind)
        entity = Entity(kind, id_, link.format(id=id_), state, static)
        if owner is not None:
            self.registry.add(entity, owner)
        return entity

    # -- the stories --------------------------------------------------------

    def _applicant_story(self, applicant: Entity) -> Iterator[_Event]:
        rng = self.rng
        yield self.emit("Applicant registered", applicant)
        if self.chance("Applicant email was changed", 0.1):
            email = str(applicant.state["email"])
            applicant.update(email=email.replace("@example.org", "@mail.example.org"))
            yield self.emit("Applicant email was changed", applicant)
        previous: Entity | None = None
        for _ in range(rng.choices((1, 2, 3), (70, 25, 5))[0]):
            previous = yield from self._application_story(applicant, previous)
        if self.chance("Applicant was transferred to another DreamID identity", 0.03):
            # Another DreamID identity: another sign-in address.
            local = str(applicant.state["email"]).split("@", 1)[0]
            applicant.update(email=f"{local}.{rng.getrandbits(16):04x}@dreamid.example.org")
            yield self.emit("Applicant was transferred to another DreamID identity", applicant)
        if self.chance("Applicant was deleted", 0.04):
            self.registry.remove_applicant(applicant, "deleted", self._logged_now())
            yield self.emit("Applicant was deleted", applicant)

    def _application_story(
        self, applicant: Entity, previous: Entity | None
    ) -> Generator[_Event, None, Entity]:
        rng = self.rng
        year = 2026 + rng.randrange(2)
        term = rng.choice(("Autumn", "Spring"))
        term_id = _TERM_IDS[(year, term)]
        own = f"{API_V9}/applications/{self.next_ids['application']}"
        name = applicant.state["name"]
        assert isinstance(name, dict)
        now = self._logged_now()
        app = self._new_child(
            "application",
            "/api/applications/{id}",
            # Application.php's fields (help .../api_applications_id); what changes first.
            {
                "created": now,
                "revised": now,
                "submitted": None,
                "status": "Draft",
                "commence_year": str(year),
                "academic_term": f"{API_V9}/academic-terms/{term_id}",
            },
            applicant,
            {
                "profile": {
                    "name": {"given": name["given"], "family": name["family"]},
                    "citizenship": applicant.state["citizenship"],
                },
                **_EMPTY_SECTIONS,
                "applicant": f"{API_V9}/applicants/{applicant.id}",
                "pdf": f"{own}/pdf",
                **{collection: f"{own}/{collection}" for collection in _APPLICATION_LINKS},
            },
        )
        app.term = term_id
        courses: dict[int, Json] = {}
        flags: dict[int, Json] = {}
        app.extra = {"courses": courses, "flags": flags}
        cloned = previous is not None and self.chance("Application was created by cloning", 0.4)
        if cloned and previous is not None:
            for course_id in _courses_of(previous):
                self._add_course(app, course_id)
        created = "Application was created by cloning" if cloned else "Application was created"
        yield self.emit(created, applicant, app)
        for _ in range(rng.randint(1, 3)):
            app.update(revised=self._logged_now())
            yield self.emit("Application was edited", applicant, app)
        yield from self._courses(applicant, app)
        yield from self._optional_steps(applicant, app)
        yield from self._documents(applicant, app)
        self._submit(app)
        yield self.emit("Application was submitted", applicant, app)
        yield from self._reopen(applicant, app)
        yield from self._review(applicant, app)
        yield from self._outcome(applicant, app)
        return app

    def _submit(self, app: Entity) -> None:
        now = self._logged_now()
        app.update(status="Submitted", submitted=now, revised=now)
        for association in _courses_of(app).values():
            association["submitted"] = now

    def _add_course(self, app: Entity, course_id: int) -> bool:
        """A course association (help .../api_applications_id_courses); False if already there."""
        courses = _courses_of(app)
        if course_id in courses:
            return False
        year = app.state["commence_year"]
        courses[course_id] = {
            "priority": len(courses) + 1,
            "submitted": None,
            "deadline": f"{year}-06-01T23:59:59+00:00",
            "course": f"{API_V9}/courses/{course_id}",
            "intake": f"{API_V9}/intakes/{app.term}",
            "modifier": None,
        }
        return True

    def _courses(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        for _ in range(rng.randint(1, 2)):
            course_id, _title = rng.choice(_COURSES)
            if self._add_course(app, course_id):
                app.update(revised=self._logged_now())
            link = f"/api/courses/{course_id}"
            yield self.emit("Course was added to application", applicant, app, ("course", link))
        courses = _courses_of(app)
        if len(courses) > 1 and self.chance("Course was removed from application", 0.2):
            course_id = next(iter(courses))
            del courses[course_id]
            for priority, association in enumerate(courses.values(), start=1):
                association["priority"] = priority
            app.update(revised=self._logged_now())
            link = f"/api/courses/{course_id}"
            yield self.emit("Course was removed from application", applicant, app, ("course", link))

    def _optional_steps(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        if self.chance("Referee was added to an application", 0.5, *_REFEREE_NAMES):
            yield from self._referee(applicant, app)
        if self.chance("Application was flagged", 0.2, "Application was un-flagged"):
            flag_id = self.rng.randint(1, 5)
            flags = _flags_of(app)
            flags[flag_id] = {
                "assigned": self._logged_now(),
                "flag": f"{API_V9}/applications/flags/{flag_id}",
            }
            flag = ("flag", f"/api/flags/{flag_id}")
            yield self.emit("Application was flagged", applicant, app, flag)
            if self.chance("Application was un-flagged", 0.5):
                del flags[flag_id]
                yield self.emit("Application was un-flagged", applicant, app, flag)
        if self.chance("Application was silenced", 0.1, "Application was un-silenced"):
            yield self.emit("Application was silenced", applicant, app)
            if self.chance("Application was un-silenced", 0.6):
                yield self.emit("Application was un-silenced", applicant, app)
        if self.chance("Application was shared with: ?", 0.12, "Application share was revoked"):
            email = self.rng.choice(_SHARE_EMAILS)
            yield self.emit(f'Application was shared with: "{email}"', applicant, app)
            if self.chance("Application share was revoked", 0.3):
                yield self.emit("Application share was revoked", applicant, app)
        if self.chance("Media was uploaded", 0.25):
            media = self._new_child("media", "/api/media/{id}", {})
            yield self.emit("Media was uploaded", applicant, app, media)
        if self.chance("Media was added", 0.15, "Media was removed"):
            media = self._new_child("media", "/api/media/{id}", {})
            yield self.emit("Media was added", applicant, app, media)
            if self.chance("Media was removed", 0.3):
                yield self.emit("Media was removed", applicant, app, media)

    def _referee(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        given, given_ascii = rng.choice(_FIRST_NAMES)
        family, family_ascii = rng.choice(_LAST_NAMES)
        # help .../api_applications_id_references: the invitation names the
        # referee; what they write arrives with the reference.
        reference = self._new_child(
            "reference",
            f"{API_V9}/applications/{app.id}/references/{{id}}",
            {
                "invited": None,
                "accessed": None,
                "committed": None,
                "invitation": {
                    "name": f"{given} {family}",
                    "email": f"{given_ascii}.{family_ascii}@referee.example.org",
                },
                "data": None,
            },
            app,
        )
        yield self.emit("Referee was added to an application", applicant, app)
        if self.chance("Referee was removed from an application", 0.1):
            self.registry.remove_reference(reference)
            yield self.emit("Referee was removed from an application", applicant, app)
            return
        reference.update(invited=self._logged_now())
        yield self.emit("Referee was invited", applicant, app)
        if self.chance("Referee was reminded", 0.3):
            yield self.emit("Referee was reminded", applicant, app)
        if self.chance("Referee committed reference", 0.75):
            now = self._logged_now()
            full = applicant.state["name"]
            assert isinstance(full, dict)
            reference.update(
                accessed=now,
                committed=now,
                data={
                    "referee": {"name": f"{given} {family}"},
                    "evaluation": {"essay": f"It is a pleasure to recommend {full['full']}."},
                },
            )
            yield self.emit("Referee committed reference", applicant, app)

    def _document(self, applicant: Entity, app: Entity) -> Entity:
        """A document attached to the application; the journal links it under its applicant."""
        rng = self.rng
        kind = rng.choice(_DOCUMENT_TYPES)
        photo = kind == "Photo"
        stem = kind.lower().replace(" ", "-")
        # Expanded, a journal item's document is file metadata (BinaryRecord): no id.
        return self._new_child(
            "document",
            f"/api/applicants/{applicant.id}/documents/{{id}}",
            {
                "uploaded": self._logged_now(),
                "name": f"{stem}-{rng.randrange(1000)}.{'jpg' if photo else 'pdf'}",
                "mime": "image/jpeg" if photo else "application/pdf",
                "size": rng.randrange(20_000, 5_000_000),
                "expires": None,
            },
            app,
        )

    def _documents(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            document = self._document(applicant, app)
            yield self.emit("Document was uploaded", applicant, app, document)
        if self.chance("Task was committed as: ?", 0.5, *_TASK_NAMES):
            yield from self._tasks(applicant, app)

    def _tasks(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        """The application's checklist: 1-3 tasks, each with its own status. The
        journal's task events name only the application: which task changed is
        for the application's tasks to tell."""
        rng = self.rng
        now = self._logged_now()
        tasks = [
            self._new_child(
                "task",
                f"{API_V9}/applications/{app.id}/tasks/{{id}}",
                {
                    "created": now,
                    "reminded": None,
                    "committed": None,
                    "resolved": None,
                    "class": class_,
                    "title": title,
                    "status": initial,
                    "notes": {"applicant": None, "administrator": None},
                },
                app,
            )
            for class_, title, initial in rng.sample(
                _TASK_CLASSES, rng.choices((1, 2, 3), (45, 35, 20))[0]
            )
        ]
        for task in tasks:
            pending = rng.choice(_TASK_PENDING)
            task.update(status=pending, committed=self._logged_now())
            yield self.emit(f'Task was committed as: "{pending}"', applicant, app)
            if self.chance("Document was uploaded to a task", 0.7):
                document = self._document(applicant, app)
                yield self.emit("Document was uploaded to a task", applicant, app, document)
            if self.chance("Task was commented", 0.3):
                task.update(notes={"applicant": "I need help", "administrator": None})
                yield self.emit("Task was commented", applicant, app)
        for task in tasks:
            if self.chance("Task was resolved as: ?", 0.8):
                done = rng.choice(_TASK_DONE)
                now = self._logged_now()
                task.update(status=done, committed=now, resolved=now)
                yield self.emit(f'Task was resolved as: "{done}"', applicant, app)

    def _reopen(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        if self.chance("Application was reopened", 0.15, "Application was re-submitted"):
            app.update(status="Reopened", revised=self._logged_now())
            yield self.emit("Application was reopened", applicant, app)
            app.update(revised=self._logged_now())
            yield self.emit("Application was edited", applicant, app)
            self._submit(app)
            yield self.emit("Application was re-submitted", applicant, app)
        if self.chance("Application was frozen", 0.1, "Application was defrosted"):
            yield self.emit("Application was frozen", applicant, app)
            if self.chance("Application was defrosted", 0.7):
                yield self.emit("Application was defrosted", applicant, app)

    def _review(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        if self.chance("Interview was started", 0.3, *_INTERVIEW_NAMES):
            interview = self._new_child("interview", "/api/interviews/{id}", {})
            yield self.emit("Interview was started", applicant, app, interview)
            if self.chance("Interview was completed", 0.9, "Interview was evaluated"):
                yield self.emit("Interview was completed", applicant, app, interview)
                if self.chance("Interview was evaluated", 0.8):
                    yield self.emit("Interview was evaluated", applicant, app, interview)
        if self.chance("Invoice was issued", 0.5, *_INVOICE_NAMES):
            yield from self._invoice(applicant, app)

    def _invoice(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        name = applicant.state["name"]
        assert isinstance(name, dict)
        courses = _courses_of(app)
        issued = self._logged_now()
        deadline = datetime.fromtimestamp(self.now, UTC).date() + timedelta(days=14)
        # help .../api_invoices_id's fields; an application fee.
        invoice = self._new_child(
            "invoice",
            "/api/invoices/{id}",
            {
                "type": "Invoice",
                "nr": f"AF-{self.next_ids['invoice']}",
                "serie": {"id": 2, "name": "Application fee"},
                "applicant": f"{API_V9}/applicants/{applicant.id}",
                "application": f"{API_V9}/applications/{app.id}",
                "course": f"{API_V9}/courses/{next(iter(courses))}" if courses else None,
                "deadline": deadline.isoformat(),
                "issued": issued,
                "delivered": issued,
                "reminder": True,
                "reminded": None,
                "collected": None,
                "currency": "EUR",
                "items": [
                    {
                        "item": "Application fee (one-time)",
                        "price": self.rng.choice(("50.00", "100.00", "150.00")),
                        "qty": "1.00",
                        "unit": None,
                        "inventory_item_ID": None,
                    }
                ],
                "collections": {},
                "instructions": "Bank account details: DREAMAPPLY BANK, IBAN EE12 1234 1234",
                "smallprint": "Please include the invoice number in the payment.",
                "payer": {"name": name["full"], "email": applicant.state["email"]},
            },
            app,
        )
        yield self.emit("Invoice was issued", applicant, app, invoice)
        if self.chance("Invoice was reminded", 0.4):
            invoice.update(reminded=self._logged_now())
            yield self.emit("Invoice was reminded", applicant, app, invoice)
        if self.chance("Invoice was marked as paid", 0.8):
            invoice.update(collected=self._logged_now())
            yield self.emit("Invoice was marked as paid", applicant, app, invoice)

    def _outcome(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        close_chance = 0.08
        if self.chance("Application was withdrawn", 0.08):
            app.update(status="Withdrawn")
            yield self.emit("Application was withdrawn", applicant, app)
            close_chance = 0.5
        elif self.chance("Application was marked as inactive", 0.05):
            app.update(status="Inactive")
            yield self.emit("Application was marked as inactive", applicant, app)
            close_chance = 0.6
        else:
            yield from self._offer(applicant, app)
        if self.chance("Application was migrated", 0.03):
            year, term = ACADEMIC_TERMS[app.term or 1]
            app.term = _TERM_IDS.get((year + 1, term), app.term)
            year = ACADEMIC_TERMS[app.term or 1][0]
            app.update(
                academic_term=f"{API_V9}/academic-terms/{app.term}",
                commence_year=str(year),
                revised=self._logged_now(),
            )
            yield self.emit("Application was migrated", applicant, app)
        if self.chance("Application was closed", close_chance, "Application was reverted"):
            status = app.state["status"]
            app.update(status="Closed")
            self.registry.close(app, self._logged_now())
            yield self.emit("Application was closed", applicant, app)
            if self.chance("Application was reverted", 0.3):
                app.update(status=status)
                self.registry.revert(app)
                yield self.emit("Application was reverted", applicant, app)

    def _offer(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        courses = _courses_of(app)
        course_id = next(reversed(courses)) if courses else _COURSES[0][0]
        first = rng.choices(("Offered", "Conditional", "Waitlisted"), (60, 25, 15))[0]
        name = applicant.state["name"]
        assert isinstance(name, dict)
        now = self._logged_now()
        comments = f"Dear {name['full']}, see {applicant.state['email']}"
        offer = self._new_child(
            "offer",
            f"{app.link}/offers/{{id}}",
            # Offer.php / help .../api_applications_id_offers_id: no applicant or
            # application link (its list's path says whose), no id when expanded.
            {
                "priority": courses[course_id]["priority"] if course_id in courses else 1,
                "inserted": now,
                "saved": now,
                "confirmed": None,
                "type": _OFFER_TYPE_LINKS[first],
                "type-confirmed": None,
                "comments-confirmed": None,
                "decision": "None",
                "decided": None,
            },
            app,
            {
                "course": f"{API_V9}/courses/{course_id}",
                "intake": f"{API_V9}/intakes/{app.term}",
                "comments": comments,
                "decision-policy": "None",
                "decision-deadline": None,
                "score": {"auto": None, "extra": None},
                "notes": None,
            },
        )
        status: str | None = first
        while status is not None:
            if status in ("Accepted", "Rejected") and self.chance("Applicant decision: ?", 0.7):
                offer.update(
                    decision="Final" if status == "Accepted" else "Declined",
                    decided=self._logged_now(),
                )
                yield self.emit(f'Applicant decision: "{status}"', applicant, app, offer)
            offer.update(type=_OFFER_TYPE_LINKS[status], saved=self._logged_now())
            yield self.emit(f'Offer was edited: "{status}"', applicant, app, offer)
            if status in ("Conditional", "Unconditional") and self.chance(
                "Offer was confirmed: ?", 0.6
            ):
                offer.update(
                    confirmed=self._logged_now(),
                    **{
                        "type-confirmed": _OFFER_TYPE_LINKS[status],
                        "comments-confirmed": comments,
                    },
                )
                yield self.emit(f'Offer was confirmed: "{status}"', applicant, app, offer)
            successors = _OFFER_NEXT.get(status)
            status = rng.choices(*successors)[0] if successors else None


def _courses_of(application: Entity) -> dict[int, Json]:
    """A live application's course associations by course id, in priority order."""
    return _associations(application, "courses")


def _flags_of(application: Entity) -> dict[int, Json]:
    return _associations(application, "flags")


def _associations(application: Entity, name: str) -> dict[int, Json]:
    extra = application.extra
    value = None if extra is None else extra[name]
    assert isinstance(value, dict), "only a live application's associations change"
    return value


def _status_template(name: str) -> str:
    """``Offer was edited: "X"`` → ``Offer was edited: ?``, the form coverage is tracked in."""
    match = _STATUS_TERM.match(name)
    if match is not None and match.group(1) in STATUS_NAMES:
        return f"{match.group(1)}?"
    return name


def _link_id(value: object) -> int | None:
    """The id of a link string's trailing integer, or of an expanded object."""
    if isinstance(value, str):
        match = _TRAILING_INT.search(value)
        return int(match.group(1)) if match else None
    if isinstance(value, dict):
        id_ = value.get("id")
        return id_ if isinstance(id_, int) and not isinstance(id_, bool) else None
    return None


_APPLICATION_NAMES = frozenset(
    {
        "Course was added to application",
        "Course was removed from application",
        "Referee was added to an application",
        "Referee was removed from an application",
    }
)


def _subject(name: str) -> str | None:
    """Which of applicant / application / offer an event name is about, if any."""
    if name.startswith("Applicant "):
        return "applicant"
    if name.startswith("Application ") or name in _APPLICATION_NAMES:
        return "application"
    if name.startswith(("Offer was edited: ", "Offer was confirmed: ")):
        return "offer"
    return None


def _fold(
    truth: dict[tuple[str, int], EntityTruth], name: str, fields: Mapping[str, object]
) -> None:
    entity = _subject(name)
    if entity is None:
        return
    id_ = _link_id(fields.get(entity))
    if id_ is None:
        return
    key = (entity, id_)
    current = truth.get(key, EntityTruth())
    deleted, forgotten, status = current.deleted, current.forgotten, current.status
    match = _STATUS_TERM.match(name)
    if match is not None and match.group(1) in STATUS_NAMES:
        status = strip_status(match.group(2))
    if name in ("Applicant was deleted", "Application was closed"):
        deleted = True
    elif name == "Application was reverted":
        deleted = False
    elif name == "Applicant requested to be forgotten":
        forgotten = True
    truth[key] = EntityTruth(deleted=deleted, status=status, forgotten=forgotten)


class Journal:
    """The event log: generated story events plus any raw events tests inject.

    Readers that need a consistent view (count, timestamps, name index) hold
    ``locked()``; rendering fragments is safe without it.
    """

    def __init__(self, events: int = 1000, seed: int = 0, start: datetime | None = None) -> None:
        begin = DEFAULT_START if start is None else start
        if begin.tzinfo is None:
            begin = begin.replace(tzinfo=UTC)
        self._generator = _Generator(seed, begin.astimezone(UTC))
        self._lock = threading.RLock()
        self._events: list[_Event | _RawEvent] = []
        self._timestamps: list[int] = []
        self._by_name: dict[str, list[int]] = {}
        self._unnamed: list[int] = []
        self._fragments: dict[frozenset[str], list[bytes | None]] = {}
        self.on_append: list[Callable[[int, int], None]] = []
        """Called with the first and last id of each append, after it (the
        simulator's webhooks)."""
        self.append(events)

    def __len__(self) -> int:
        return len(self._events)

    @contextmanager
    def locked(self) -> Iterator[Journal]:
        with self._lock:
            yield self

    @property
    def timestamps(self) -> Sequence[int]:
        """Epoch seconds of each event, non-decreasing (position = id - 1)."""
        return self._timestamps

    @property
    def positions_by_name(self) -> Mapping[str, Sequence[int]]:
        """Ascending positions (id - 1) of the events of each exact name."""
        return self._by_name

    @property
    def unnamed_positions(self) -> Sequence[int]:
        """Ascending positions of injected events without a string ``event`` name."""
        return self._unnamed

    @property
    def clock(self) -> int:
        """The journal's now (epoch seconds): the newest event's time, or the start."""
        return self._generator.now

    @property
    def registry(self) -> Registry:
        """Every resource as it is now (raw events aside)."""
        return self._generator.registry

    def first_retained(self, window: float | None) -> int:
        """Position of the oldest event a journal keeping ``window`` seconds still serves.

        Upstream forgets events older than that before its clock; ``None`` keeps all.
        """
        if window is None:
            return 0
        return bisect_left(self._timestamps, self._generator.now - window)

    def append(self, n: int) -> int:
        """Generate ``n`` more story events; the id of the last event."""
        with self._lock, _gc_paused(n >= _GC_PAUSE_FROM):
            first = len(self._events) + 1
            generator = self._generator
            for _ in range(n):
                event = generator.next_event()
                self._add(event, generator.now, event[1])
            last = len(self._events)
        self._appended(first, last)
        return last

    def append_raw(self, obj: object) -> int:
        """Append any JSON value as the next event, served verbatim; its id.

        Its ``logged``, when parseable, moves the journal clock forward (never
        back), so time filters stay well defined.
        """
        body = orjson.dumps(obj)
        name = obj.get("event") if isinstance(obj, dict) else None
        with self._lock:
            generator = self._generator
            logged = _parse_logged(obj.get("logged")) if isinstance(obj, dict) else None
            if logged is not None:
                generator.now = max(generator.now, logged)
            self._add(_RawEvent(body, name if isinstance(name, str) else None), generator.now, name)
            last = len(self._events)
        self._appended(last, last)
        return last

    def _appended(self, first: int, last: int) -> None:
        if first <= last:
            for listener in list(self.on_append):
                listener(first, last)

    def _add(self, event: _Event | _RawEvent, timestamp: int, name: object) -> None:
        position = len(self._events)
        self._events.append(event)
        self._timestamps.append(timestamp)
        if isinstance(name, str):
            positions = self._by_name.get(name)
            if positions is None:
                self._by_name[name] = [position]
            else:
                positions.append(position)
        else:
            self._unnamed.append(position)

    def fragments(self, expand: frozenset[str], positions: Sequence[int]) -> list[bytes]:
        """``b'"id":{...}'`` for each position, rendered once per expand set and cached."""
        key = expand & EXPANDABLE
        cache = self._fragments.get(key)
        if cache is None or len(cache) < len(self._events):
            with self._lock:
                cache = self._fragments.setdefault(key, [])
                cache.extend([None] * (len(self._events) - len(cache)))
        out: list[bytes] = []
        for position in positions:
            fragment = cache[position]
            if fragment is None:
                # Concurrent requests may both render this; the bytes are identical.
                fragment = cache[position] = self._render(position, key)
            out.append(fragment)
        return out

    def _render(self, position: int, expand: frozenset[str]) -> bytes:
        event = self._events[position]
        body = event.body if isinstance(event, _RawEvent) else _render_event(event, expand)
        return b'"%d":%b' % (position + 1, body)

    def truth(self) -> dict[tuple[str, int], EntityTruth]:
        """Deleted / status / forgotten of every applicant, application and offer so far."""
        truth: dict[tuple[str, int], EntityTruth] = {}
        with self._lock:
            events = list(self._events)
        for event in events:
            if not isinstance(event, _RawEvent):
                _fold(truth, event[1], dict(event[2]))
                continue
            obj = orjson.loads(event.body)
            if isinstance(obj, dict) and isinstance(obj.get("event"), str):
                _fold(truth, obj["event"], obj)
        return truth

    def current(self) -> CurrentState:
        """What a correct, complete mirror must hold now (see ``CurrentState``).

        Unlike ``truth()``, which folds the whole journal, this is what the
        resource and list endpoints serve: live resources only (an application
        of a deleted or forgotten applicant is purged too, as are the offers,
        tasks, references and documents of purged applications), each with its
        current state, and what was purged, with or without a journal event.
        Raw injected events are not reflected.
        """
        records: dict[tuple[str, int], Json] = {}
        parents: dict[tuple[str, int], int] = {}
        with self._lock:
            registry = self._generator.registry
            for kind in RECORD_KINDS:
                for entity in registry.entities(kind):
                    if not entity.live:
                        continue
                    key = (kind, entity.id)
                    data: Json = orjson.loads(entity.resource())
                    if kind == "offer":
                        data["status"] = offer_status(data)
                    records[key] = data
                    if kind in CHILD_KINDS and entity.owner is not None:
                        parents[key] = entity.owner.id
            purged = {
                (purge.entity.kind, purge.entity.id): purge.reason
                for purge in registry.purges.values()
            }
            requests = dict(registry.forget_requests)
        return CurrentState(records, purged, parents, requests)

    def ids(self, kind: str) -> set[int]:
        """Every id the simulator ever issued to an entity of ``kind`` (a record kind,
        or ``media`` / ``interview``): ids are unique per kind, never reused."""
        if kind not in FIRST_IDS:
            raise ValueError(f"no such entity kind: {kind!r}")
        with self._lock:
            return set(range(FIRST_IDS[kind], self._generator.next_ids[kind]))

    def purge_term(self, term_id: int) -> list[int]:
        """Purge every live application of an academic term, as DreamApply's
        overnight cleanup does: entries of type ``Application`` in
        ``/purged-resources`` (reason ``term``), no journal event. Their offers,
        tasks, references and documents go with them; their invoices stay,
        detached. Stories still running for their applicants end. The purged ids."""
        with self._lock:
            return self._generator.purge_term(term_id)

    def confirm_forget(self, applicant_id: int) -> bool:
        """An administrator confirms that the applicant is forgotten: a purge with
        no journal event, an ``Applicant`` entry whose ``request_to_be_forgotten``
        is set (the time of their request, or now if they made none), their
        applications purged with them. False if they are unknown or already purged."""
        with self._lock:
            return self._generator.confirm_forget(applicant_id)


@contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """Suspend the cyclic GC while building a big batch.

    Generation allocates millions of small acyclic objects; the collector's
    passes over them would double the time of a 100 000-event journal and
    could not free anything (reference counting does).
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse_logged(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())
