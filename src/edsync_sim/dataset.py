"""A deterministic, growing DreamApply journal.

Applicants arrive over time and live through a story (applications, documents,
referees, interviews, invoices, offers, decisions); many stories run at once so
their events interleave as in a real journal. Everything is drawn from one
``random.Random(seed)``, and generation is incremental, so ``Journal(n + m)``
and ``Journal(n)`` followed by ``append(m)`` produce byte-identical events.

Each event keeps, for every expandable link it carries, the entity's state at
that moment (serialized once per version and shared between events), so
``expand`` shows history as it was, not as it is now.

The ``Registry`` keeps every applicant, application and offer as it is now, and
what was purged, for the list endpoints: a client can bootstrap a mirror from
them and find it consistent with the journal (``Journal.current()`` is the
oracle of that state, ``Journal.truth()`` the oracle of the journal's history).
"""

from __future__ import annotations

import gc
import random
import re
import threading
from bisect import bisect_left
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson

__all__ = [
    "ACADEMIC_TERMS",
    "DEFAULT_START",
    "EVENT_NAMES",
    "EXPANDABLE",
    "FIRST_IDS",
    "JOURNAL_LINKS",
    "OFFER_STATUSES",
    "OFFER_TYPES",
    "OFFER_TYPES_PATH",
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
OFFER_TYPES_PATH = "/api/applications/offers/types"
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
_TASK_PENDING = ("Pending", "Submitted", "In review")
_TASK_DONE = ("Done", "Approved", "Completed")

# First ids per entity: distinct ranges make a consumer that mixes up ids fail loudly.
FIRST_IDS = {
    "applicant": 1001,
    "application": 20001,
    "offer": 50001,
    "document": 70001,
    "media": 90001,
    "interview": 110001,
    "referee": 130001,
    "invoice": 150001,
    "task": 170001,
}

# Concurrent stories: enough to interleave applicants realistically.
_MIN_ACTIVE = 5
_MAX_ACTIVE = 40
_NEW_STORY_CHANCE = 1 / 25
# About one event in 500 is a request to be forgotten.
_FORGET_CHANCE = 1 / 500
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


class Entity:
    """One upstream record and its current state.

    Registered ones (applicants, applications, offers) also know their
    ``owner`` (an application's applicant, an offer's application), their
    ``children`` (the reverse) and, while purged, their ``purge`` entry. When
    their story ends they are frozen: ``state`` is emptied and ``json()`` (or
    ``data()``) is the only view of them left.
    """

    __slots__ = ("_json", "children", "id", "kind", "link", "owner", "purge", "state", "term")

    def __init__(self, kind: str, id_: int, link: str, state: Json) -> None:
        self.kind = kind
        self.id = id_
        self.link = link
        self.state: Json = {"id": id_, **state}
        self._json: bytes | None = None
        self.owner: Entity | None = None
        self.children: list[Entity] | None = None
        self.purge: Purge | None = None
        self.term: int | None = None  # an application's academic term id

    @property
    def live(self) -> bool:
        """Listed by the list endpoints: neither it nor the application of an offer purged."""
        if self.kind == "offer":
            return self.owner is not None and self.owner.purge is None
        return self.purge is None

    def update(self, **changes: object) -> None:
        self.state.update(changes)
        self._json = None

    def json(self) -> bytes:
        """The state serialized now: events keep these bytes, so history stays as it was."""
        if self._json is None:
            self._json = orjson.dumps(self.state)
        return self._json

    def data(self) -> Json:
        """A private copy of the current state, frozen or not."""
        parsed: Json = orjson.loads(self.json())
        return parsed

    def freeze(self) -> None:
        """It will never change again: keep the serialized state (the journal's
        events share those bytes) and let the dict go: most of what keeping
        every entity would cost."""
        self.json()
        self.state = {}


@dataclass(frozen=True, slots=True)
class Purge:
    """An entry of ``/purged-resources``: which resource left the lists, when and why."""

    number: int
    entity: Entity
    reason: str  # "deleted" | "forgotten" | "closed"
    purged: str  # ``logged`` of the event that removed it


_REGISTERED = ("applicant", "application", "offer")


class Registry:
    """Every applicant, application and offer ever generated, and what is purged now.

    Ids of a kind are consecutive from ``FIRST_IDS[kind]``, so ``entities(kind)``
    is in ascending id order and indexed by ``id - FIRST_IDS[kind]``. Purge
    numbers follow the journal order of the removing events and are never
    reused; a revert drops its entry. Generation mutates all this: read it with
    the journal's lock held.
    """

    __slots__ = ("_by_kind", "_next_purge", "purges")

    def __init__(self) -> None:
        self._by_kind: dict[str, list[Entity]] = {kind: [] for kind in _REGISTERED}
        self.purges: dict[int, Purge] = {}  # ascending numbers, as inserted
        self._next_purge = 1

    def entities(self, kind: str) -> Sequence[Entity]:
        return self._by_kind[kind]

    def get(self, kind: str, id_: int) -> Entity | None:
        entities = self._by_kind[kind]
        index = id_ - FIRST_IDS[kind]
        return entities[index] if 0 <= index < len(entities) else None

    def add(self, entity: Entity, owner: Entity | None = None) -> None:
        entities = self._by_kind[entity.kind]
        assert entity.id == FIRST_IDS[entity.kind] + len(entities), "ids must stay consecutive"
        entities.append(entity)
        if owner is not None:
            entity.owner = owner
            if owner.children is None:
                owner.children = [entity]
            else:
                owner.children.append(entity)

    def remove_applicant(self, applicant: Entity, reason: str, logged: str) -> None:
        """Deleted or forgotten: the applicant and every application still listed go."""
        self._purge(applicant, reason, logged)
        for application in applicant.children or ():
            if application.purge is None:
                self._purge(application, reason, logged)

    def close(self, application: Entity, logged: str) -> None:
        if application.purge is None:
            self._purge(application, "closed", logged)

    def revert(self, application: Entity) -> None:
        purge = application.purge
        if purge is not None and purge.reason == "closed":
            del self.purges[purge.number]
            application.purge = None

    def _purge(self, entity: Entity, reason: str, logged: str) -> None:
        number = self._next_purge
        self._next_purge = number + 1
        entity.purge = self.purges[number] = Purge(number, entity, reason, logged)


def offer_status(offer: Json) -> str | None:
    """The title of an offer's type: the status the journal's names carry."""
    type_id = _link_id(offer.get("type"))
    return None if type_id is None else OFFER_TYPES.get(type_id)


@dataclass(frozen=True, slots=True)
class CurrentState:
    """What a complete mirror bootstrapped now from the list endpoints must hold.

    ``records``: ``(entity, id)`` → the object as listed, for every live
    applicant and application and every offer of a live application; an offer's
    also has ``"status"``, its type's title. ``purged``: ``(entity, id)`` →
    reason (``deleted`` / ``forgotten`` / ``closed``) of every applicant and
    application ``/purged-resources`` lists.
    """

    records: dict[tuple[str, int], Json]
    purged: dict[tuple[str, int], str]


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
        self._logged_ts = -1
        self._logged = ""

    # -- the scheduler ------------------------------------------------------

    def next_event(self) -> _Event:
        if self.generated:
            self.now += self._gap()
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
            # Erasure ends the story: nothing more is ever logged for them.
            self.registry.remove_applicant(story.applicant, "forgotten", self._logged_now())
            farewell = self.emit("Applicant requested to be forgotten", story.applicant)
            self._end(story)
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

    def chance(self, name: str, p: float, *unlocks: str) -> bool:
        """A branch taken with probability ``p``, or more often while the names
        it logs (or unlocks further down the story) have not occurred yet."""
        if self.generated >= _COVERAGE_AFTER and not self.seen.issuperset((name, *unlocks)):
            p = max(p, _COVERAGE_CHANCE)
        return self.rng.random() < p

    # -- building blocks ----------------------------------------------------

    def _logged_now(self) -> str:
        if self.now != self._logged_ts:
            self._logged_ts = self.now
            self._logged = datetime.fromtimestamp(self.now, UTC).isoformat()
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
        born = date(1980, 1, 1) + timedelta(days=rng.randrange(28 * 365))
        applicant = Entity(
            "applicant",
            id_,
            f"/api/applicants/{id_}",
            {
                "registered": self._logged_now(),
                "name": {"given": given, "family": family, "full": f"{given} {family}"},
                "email": f"{given_ascii}.{family_ascii}.{id_}@example.org",
                "phone": f"+372 5{rng.randrange(100000, 999999)}",
                "birthDate": born.isoformat(),
                "citizenship": rng.choice(_CITIZENSHIPS),
                "dreamId": f"{rng.getrandbits(64):016x}",
            },
        )
        self.registry.add(applicant)
        return applicant

    def _new_child(self, kind: str, link: str, state: Json) -> Entity:
        id_ = self.new_id(kind)
        return Entity(kind, id_, link.format(id=id_), state)

    # -- the stories --------------------------------------------------------

    def _applicant_story(self, applicant: Entity) -> Iterator[_Event]:
        rng = self.rng
        yield self.emit("Applicant registered", applicant)
        if self.chance("Applicant email was changed", 0.1):
            given = applicant.state["email"]
            applicant.update(email=str(given).replace("@example.org", "@mail.example.org"))
            yield self.emit("Applicant email was changed", applicant)
        previous: Entity | None = None
        for _ in range(rng.choices((1, 2, 3), (70, 25, 5))[0]):
            previous = yield from self._application_story(applicant, previous)
        if self.chance("Applicant was transferred to another DreamID identity", 0.03):
            applicant.update(dreamId=f"{rng.getrandbits(64):016x}")
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
        app = self._new_child(
            "application",
            "/api/applications/{id}",
            {
                "applicant": applicant.link,
                "created": self._logged_now(),
                "academicTerm": {"year": year, "term": term},
                "intake": f"{year} {term}",
                "courses": [],
                "state": "draft",
                "submitted": None,
                "closed": False,
            },
        )
        app.term = _TERM_IDS[(year, term)]
        self.registry.add(app, applicant)
        cloned = previous is not None and self.chance("Application was created by cloning", 0.4)
        if cloned and previous is not None:
            app.update(courses=previous.state["courses"])
        name = "Application was created by cloning" if cloned else "Application was created"
        yield self.emit(name, applicant, app)
        for _ in range(rng.randint(1, 3)):
            yield self.emit("Application was edited", applicant, app)
        yield from self._courses(applicant, app)
        yield from self._optional_steps(applicant, app)
        yield from self._documents(applicant, app)
        app.update(state="submitted", submitted=self._logged_now())
        yield self.emit("Application was submitted", applicant, app)
        yield from self._reopen(applicant, app)
        yield from self._review(applicant, app)
        yield from self._outcome(applicant, app)
        return app

    def _courses(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        for _ in range(rng.randint(1, 2)):
            course_id, _title = rng.choice(_COURSES)
            link = f"/api/courses/{course_id}"
            courses = app.state["courses"]
            assert isinstance(courses, list)
            app.update(courses=[*courses, link])
            yield self.emit("Course was added to application", applicant, app, ("course", link))
        courses = app.state["courses"]
        assert isinstance(courses, list)
        if len(courses) > 1 and self.chance("Course was removed from application", 0.2):
            link = courses[0]
            app.update(courses=courses[1:])
            yield self.emit("Course was removed from application", applicant, app, ("course", link))

    def _optional_steps(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        if self.chance("Referee was added to an application", 0.5, *_REFEREE_NAMES):
            yield from self._referee(applicant, app)
        if self.chance("Application was flagged", 0.2, "Application was un-flagged"):
            flag = ("flag", f"/api/flags/{self.rng.randint(1, 5)}")
            yield self.emit("Application was flagged", applicant, app, flag)
            if self.chance("Application was un-flagged", 0.5):
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
        referee = self._new_child("referee", "/api/referees/{id}", {})
        yield self.emit("Referee was added to an application", applicant, app, referee)
        if self.chance("Referee was removed from an application", 0.1):
            yield self.emit("Referee was removed from an application", applicant, app, referee)
            return
        yield self.emit("Referee was invited", applicant, app, referee)
        if self.chance("Referee was reminded", 0.3):
            yield self.emit("Referee was reminded", applicant, app, referee)
        if self.chance("Referee committed reference", 0.75):
            yield self.emit("Referee committed reference", applicant, app, referee)

    def _document(self, applicant: Entity, app: Entity, task: Entity | None) -> Entity:
        rng = self.rng
        kind = rng.choice(_DOCUMENT_TYPES)
        document = self._new_child(
            "document",
            "/api/documents/{id}",
            {
                "applicant": applicant.link,
                "application": app.link,
                "task": task.link if task is not None else None,
                "type": kind,
                "filename": f"{kind.lower().replace(' ', '-')}-{rng.randrange(1000)}.pdf",
                "uploaded": self._logged_now(),
            },
        )
        # Expanded, a journal item's document is file metadata (BinaryRecord): no id.
        del document.state["id"]
        return document

    def _documents(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            document = self._document(applicant, app, None)
            yield self.emit("Document was uploaded", applicant, app, document)
        if self.chance("Task was committed as: ?", 0.5, *_TASK_NAMES):
            task = self._new_child("task", "/api/tasks/{id}", {})
            pending = rng.choice(_TASK_PENDING)
            yield self.emit(f'Task was committed as: "{pending}"', applicant, app, task)
            if self.chance("Document was uploaded to a task", 0.7):
                document = self._document(applicant, app, task)
                yield self.emit("Document was uploaded to a task", applicant, app, document, task)
            if self.chance("Task was commented", 0.3):
                yield self.emit("Task was commented", applicant, app, task)
            if self.chance("Task was resolved as: ?", 0.8):
                done = rng.choice(_TASK_DONE)
                yield self.emit(f'Task was resolved as: "{done}"', applicant, app, task)

    def _reopen(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        if self.chance("Application was reopened", 0.15, "Application was re-submitted"):
            app.update(state="reopened")
            yield self.emit("Application was reopened", applicant, app)
            yield self.emit("Application was edited", applicant, app)
            app.update(state="submitted", submitted=self._logged_now())
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
        invoice = self._new_child(
            "invoice",
            "/api/invoices/{id}",
            {
                "applicant": applicant.link,
                "application": app.link,
                "issued": self._logged_now(),
                "amount": self.rng.choice(("50.00", "100.00", "150.00")),
                "currency": "EUR",
                "reminded": False,
                "paid": False,
            },
        )
        yield self.emit("Invoice was issued", applicant, app, invoice)
        if self.chance("Invoice was reminded", 0.4):
            invoice.update(reminded=True)
            yield self.emit("Invoice was reminded", applicant, app, invoice)
        if self.chance("Invoice was marked as paid", 0.8):
            invoice.update(paid=True)
            yield self.emit("Invoice was marked as paid", applicant, app, invoice)

    def _outcome(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        close_chance = 0.08
        if self.chance("Application was withdrawn", 0.08):
            app.update(state="withdrawn")
            yield self.emit("Application was withdrawn", applicant, app)
            close_chance = 0.5
        elif self.chance("Application was marked as inactive", 0.05):
            app.update(state="inactive")
            yield self.emit("Application was marked as inactive", applicant, app)
            close_chance = 0.6
        else:
            yield from self._offer(applicant, app)
        if self.chance("Application was migrated", 0.03):
            term = app.state["academicTerm"]
            assert isinstance(term, dict)
            moved = {"year": term["year"] + 1, "term": term["term"]}
            app.update(academicTerm=moved, intake=f"{moved['year']} {moved['term']}")
            app.term = _TERM_IDS[(moved["year"], moved["term"])]
            yield self.emit("Application was migrated", applicant, app)
        if self.chance("Application was closed", close_chance, "Application was reverted"):
            app.update(closed=True)
            self.registry.close(app, self._logged_now())
            yield self.emit("Application was closed", applicant, app)
            if self.chance("Application was reverted", 0.3):
                app.update(closed=False)
                self.registry.revert(app)
                yield self.emit("Application was reverted", applicant, app)

    def _offer(self, applicant: Entity, app: Entity) -> Iterator[_Event]:
        rng = self.rng
        courses = app.state["courses"]
        assert isinstance(courses, list)
        first = rng.choices(("Offered", "Conditional", "Waitlisted"), (60, 25, 15))[0]
        offer = self._new_child(
            "offer",
            f"{app.link}/offers/{{id}}",
            # Offer.php: no applicant or application link; its list's path says whose.
            {
                "course": courses[-1],
                "type": _OFFER_TYPE_LINKS[first],
                "confirmed": False,
                "comments": f"Offer for {applicant.state['email']}",
            },
        )
        self.registry.add(offer, app)
        status: str | None = first
        while status is not None:
            if status in ("Accepted", "Rejected") and self.chance("Applicant decision: ?", 0.7):
                yield self.emit(f'Applicant decision: "{status}"', applicant, app, offer)
            offer.update(type=_OFFER_TYPE_LINKS[status])
            yield self.emit(f'Offer was edited: "{status}"', applicant, app, offer)
            if status in ("Conditional", "Unconditional") and self.chance(
                "Offer was confirmed: ?", 0.6
            ):
                offer.update(confirmed=True)
                yield self.emit(f'Offer was confirmed: "{status}"', applicant, app, offer)
            successors = _OFFER_NEXT.get(status)
            status = rng.choices(*successors)[0] if successors else None


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
        """Applicants, applications and offers as they are now (raw events aside)."""
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
            generator = self._generator
            for _ in range(n):
                event = generator.next_event()
                self._add(event, generator.now, event[1])
            return len(self._events)

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
            return len(self._events)

    def _add(self, event: _Event | _RawEvent, timestamp: int, name: object) -> None:
        position = len(self._events)
        self._events.append(event)
        self._timestamps.append(timestamp)
        if isinstance(name, str):
            self._by_name.setdefault(name, []).append(position)
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
        """The state a mirror bootstrapped now from the list endpoints must hold.

        Unlike ``truth()``, which folds the whole journal, this is what the list
        endpoints serve: live entities only (an application of a deleted or
        forgotten applicant is purged too, as are offers of purged
        applications), each with its current state. Raw injected events are
        not reflected.
        """
        records: dict[tuple[str, int], Json] = {}
        with self._lock:
            registry = self._generator.registry
            for applicant in registry.entities("applicant"):
                if applicant.live:
                    records[("applicant", applicant.id)] = applicant.data()
            for application in registry.entities("application"):
                if application.live:
                    records[("application", application.id)] = application.data()
                    for offer in application.children or ():
                        records[("offer", offer.id)] = _offer_now(offer)
            purged = {
                (purge.entity.kind, purge.entity.id): purge.reason
                for purge in registry.purges.values()
            }
        return CurrentState(records, purged)


def _offer_now(offer: Entity) -> Json:
    data = offer.data()
    data["status"] = offer_status(data)
    return data


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
