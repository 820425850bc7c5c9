"""A deterministic Edlink Graph: nine entity kinds, an initial graph and its change stream.

The initial graph (districts down to enrollments and agents) predates the
event history, as on a real integration whose early events were purged long
ago: a new consumer has to snapshot the list endpoints. The event stream then
creates, updates and deletes objects of every kind; "sharing rules" make
objects disappear (``deleted``, carrying the object as it last was) and come
back under the same id (``created`` again).

Everything but the event dates is drawn from one ``random.Random(seed)``, so a
seed always yields the same ids and data; the dates follow the Edlink clock
(history spread over the days before the start, growth at "now").
"""

from __future__ import annotations

import random
import threading
import uuid
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from edsync_sim.dataset import _gc_paused

__all__ = [
    "DEFAULT_TOKEN",
    "KINDS",
    "OPS",
    "PLURALS",
    "RETENTION",
    "EdlinkGraph",
    "GraphTruth",
    "iso",
    "to_ms",
    "utc_now",
]

DEFAULT_TOKEN = "sim-edlink-token"  # noqa: S105 - a public test token, not a secret

KINDS: tuple[str, ...] = (
    "district",
    "school",
    "session",
    "course",
    "person",
    "class",
    "section",
    "enrollment",
    "agent",
)
PLURALS: Mapping[str, str] = {
    "district": "districts",
    "school": "schools",
    "session": "sessions",
    "course": "courses",
    "person": "people",
    "class": "classes",
    "section": "sections",
    "enrollment": "enrollments",
    "agent": "agents",
}
OPS: tuple[str, ...] = ("created", "updated", "deleted")

# Edlink destroys events after 30 days.
RETENTION = timedelta(days=30)

Json = dict[str, object]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # naive on purpose: only ever formatted, with a "Z"
_DAY_MS = 86_400_000

# How often each kind changes: people and enrollments churn, districts rarely do.
_KIND_WEIGHTS = (2, 3, 4, 5, 34, 6, 6, 32, 8)
_OP_WEIGHTS = (30, 50, 20)
# Deletion never empties these kinds, so new objects always find a parent.
_FLOOR = {"district": 1, "school": 1, "session": 1, "course": 1}
# Share of "created" events that bring back an unshared object rather than a new one.
_REVIVE_CHANCE = 0.35
# Rejection-sampling budget when looking for, say, a live parent among people.
_TRIES = 30
# Events per person when the caller does not say how many.
_EVENTS_PER_PERSON = 5
# Batches at least this large are generated with the cyclic GC paused.
_GC_PAUSE_FROM = 1000

_ROLES = ("student", "teacher", "parent", "guardian", "administrator")
_ROLE_WEIGHTS = (72, 10, 12, 4, 2)
_CITIES = (
    ("Springfield", "springfield"),
    ("Riverton", "riverton"),
    ("Lakewood", "lakewood"),
    ("Fairview", "fairview"),
    ("Maple Grove", "maplegrove"),
    ("Cedar Falls", "cedarfalls"),
    ("Brookside", "brookside"),
    ("Hillcrest", "hillcrest"),
)
_TIME_ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
_SCHOOL_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Elementary School", ("KG", "01", "02", "03", "04", "05")),
    ("Middle School", ("06", "07", "08")),
    ("High School", ("09", "10", "11", "12")),
)
_SCHOOL_NAMES = ("Lincoln", "Washington", "Roosevelt", "Jefferson", "Oak Ridge", "Pine Valley")
# Subjects are Edlink's codes (api/v2.0/models/external/enums/subject.md).
_SUBJECTS = (
    ("Algebra I", "MATH", "CEDS.02"),
    ("Geometry", "MATH", "CEDS.02"),
    ("Biology", "SCI", "CEDS.03"),
    ("Chemistry", "SCI", "CEDS.03"),
    ("World History", "HIST", "CEDS.04"),
    ("English Literature", "ENG", "CEDS.01"),
    ("Spanish I", "SPAN", "CEDS.24"),
    ("Studio Art", "ART", "CEDS.05"),
    ("Physical Education", "PE", "CEDS.08"),
    ("Computer Science", "CS", "CEDS.10"),
)
_FIRST_NAMES = (
    ("Olivia", "olivia"),
    ("Liam", "liam"),
    ("Emma", "emma"),
    ("Noah", "noah"),
    ("Sofía", "sofia"),
    ("Mateo", "mateo"),
    ("Zoë", "zoe"),
    ("Amara", "amara"),
    ("Wei", "wei"),
    ("Priya", "priya"),
    ("Jürgen", "jurgen"),
    ("Siobhán", "siobhan"),
    ("Łukasz", "lukasz"),
    ("Kai", "kai"),
)
_LAST_NAMES = (
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("García", "garcia"),
    ("Nguyen", "nguyen"),
    ("Müller", "muller"),
    ("O'Brien", "obrien"),
    ("Kowalski", "kowalski"),
    ("Okafor", "okafor"),
    ("Zhang", "zhang"),
    ("Sharma", "sharma"),
    ("Hernández", "hernandez"),
    ("Lindqvist", "lindqvist"),
)
# Edlink's SessionState (enums/session-state.md) has no "inactive".
_SESSION_STATES = ("active", "upcoming", "completed")
_ENROLLMENT_STATES = ("active", "inactive", "completed", "dropped")
# Every Person carries demographics (models/external/demographics.md); unknown here.
_DEMOGRAPHICS: Json = {
    "birthday": None,
    "gender": None,
    "residence_status": None,
    "english_language_learner": None,
    "country_of_birth": None,
    "state_of_birth": None,
    "city_of_birth": None,
    "hispanic_or_latino_ethnicity": None,
    "races": [],
    "homeless": None,
    "disability": None,
    "gifted_talented": None,
    "food_service_program_eligibility": None,
    "economically_disadvantaged": None,
    "migrant": None,
    "public_assistance": None,
    "rural_residency": None,
    "individualized_education_plan": None,
}


def utc_now() -> datetime:
    """The default Edlink clock. ``datetime`` is looked up per call, so freezegun applies."""
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso(ms: int) -> str:
    """Edlink's date form: ``2021-07-13T17:45:27.548Z``."""
    # Naive arithmetic plus isoformat: about three times faster than strftime, and hot.
    moment = _NAIVE_EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds") + "Z"


@dataclass(frozen=True, slots=True)
class GraphTruth:
    """What a correct mirror holds for one object: tombstones keep their last data."""

    deleted: bool
    data: Mapping[str, object]


@dataclass(slots=True)
class _Object:
    """One graph object. ``data`` is replaced, never mutated, so events can share it."""

    kind: str
    data: Json
    deleted: bool = False
    body: bytes = b""

    @property
    def id(self) -> str:
        return _text(self.data, "id")

    def text(self, key: str) -> str:
        return _text(self.data, key)


@dataclass(frozen=True, slots=True)
class _Event:
    id: str
    ms: int
    body: bytes


def _text(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string: {value!r}")
    return value


def _graduation_year(school_year: int, grade_levels: list[str]) -> int | None:
    """A student's expected graduation year from their grade (KG counts as 0)."""
    if not grade_levels:
        return None
    grade = grade_levels[0]
    level = int(grade) if grade.isdigit() else 0
    return school_year + 1 + 12 - level


def _roles(obj: _Object) -> object:
    return obj.data.get("roles")


def _is_observer(obj: _Object) -> bool:
    return _roles(obj) in (["parent"], ["guardian"])


class _Pool:
    """Ids in a list plus an index: O(1), deterministic random picks and removals."""

    __slots__ = ("_at", "_ids")

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, id_: str) -> None:
        self._at[id_] = len(self._ids)
        self._ids.append(id_)

    def remove(self, id_: str) -> None:
        index = self._at.pop(id_)
        last = self._ids.pop()
        if last != id_:
            self._ids[index] = last
            self._at[last] = index

    def __contains__(self, id_: object) -> bool:
        return id_ in self._at

    def ids(self) -> list[str]:
        """A copy, in pool order (deterministic, not sorted)."""
        return list(self._ids)

    def pick(self, rng: random.Random) -> str:
        return self._ids[rng.randrange(len(self._ids))]


@dataclass(frozen=True, slots=True)
class _Change:
    """One generated change, before it is rendered as an event."""

    event_id: str
    op: str
    obj: _Object


class _Generator:
    """The graph's state and the rules that change it; all choices from ``rng``."""

    def __init__(self, seed: int, history_start: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311
        self.history_start = history_start
        self.objects: dict[tuple[str, str], _Object] = {}
        self.live: dict[str, _Pool] = {kind: _Pool() for kind in KINDS}
        self.gone: dict[str, _Pool] = {kind: _Pool() for kind in KINDS}
        self.sessions_of: dict[str, list[str]] = {}
        self.sections_of: dict[str, list[str]] = {}
        self.serial = 0
        # The school year the history falls in: sessions are named after it.
        start = _EPOCH + timedelta(milliseconds=history_start)
        self.year = start.year if start.month >= 7 else start.year - 1

    # -- primitives -----------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def get(self, kind: str, id_: str) -> _Object:
        return self.objects[kind, id_]

    def pick(self, kind: str, accept: Callable[[_Object], bool] | None = None) -> _Object | None:
        """A random live object of ``kind`` that ``accept`` likes, or None."""
        pool = self.live[kind]
        for _ in range(_TRIES if accept is not None else 1):
            if not pool:
                return None
            obj = self.get(kind, pool.pick(self.rng))
            if accept is None or accept(obj):
                return obj
        return None

    def past(self) -> tuple[int, int]:
        """Created / updated times of an initial object: well before the history."""
        created = self.history_start - self.rng.randrange(30 * _DAY_MS, 400 * _DAY_MS)
        updated = created + self.rng.randrange(self.history_start - created)
        return created, updated

    def add(self, kind: str, stamp: tuple[int, int], fields: Json) -> _Object:
        data: Json = {
            "id": self.uuid(),
            "created_date": iso(stamp[0]),
            "updated_date": iso(stamp[1]),
            **fields,
            "properties": {},
        }
        obj = _Object(kind, data)
        self.objects[kind, obj.id] = obj
        self.live[kind].add(obj.id)
        return obj

    # -- builders: one per kind; None when no live parent exists ------------

    def district(self, stamp: tuple[int, int]) -> _Object:
        city, _slug = self.rng.choice(_CITIES)
        return self.add(
            "district",
            stamp,
            {
                "name": f"{city} School District {self.next_serial()}",
                "picture_url": None,
                "locale": "en-US",
                "time_zone": self.rng.choice(_TIME_ZONES),
                "location": None,
                "identifiers": [],
            },
        )

    def school(self, stamp: tuple[int, int]) -> _Object | None:
        district = self.pick("district")
        if district is None:
            return None
        level, grades = self.rng.choice(_SCHOOL_LEVELS)
        return self.add(
            "school",
            stamp,
            {
                "name": f"{self.rng.choice(_SCHOOL_NAMES)} {level}",
                "district_id": district.id,
                "locale": "en-US",
                "time_zone": district.data["time_zone"],
                "grade_levels": list(grades),
                "picture_url": None,
                "location": None,
                "identifiers": [],
                "product_ids": [],
            },
        )

    def session(self, stamp: tuple[int, int], school: _Object | None = None) -> _Object | None:
        school = school or self.pick("school")
        if school is None:
            return None
        year = self.year + self.rng.randrange(2)
        fall = self.rng.random() < 0.5
        begin = datetime(year, 8, 15, tzinfo=UTC) if fall else datetime(year + 1, 1, 10, tzinfo=UTC)
        end = datetime(year, 12, 20, tzinfo=UTC) if fall else datetime(year + 1, 6, 10, tzinfo=UTC)
        session = self.add(
            "session",
            stamp,
            {
                "name": f"Fall {year}" if fall else f"Spring {year + 1}",
                "start_date": iso(to_ms(begin)),
                "end_date": iso(to_ms(end)),
                "state": "active",
                "type": "semester",
                "identifiers": [],
                "school_id": school.id,
                "district_id": school.data["district_id"],
            },
        )
        self.sessions_of.setdefault(school.id, []).append(session.id)
        return session

    def course(self, stamp: tuple[int, int]) -> _Object | None:
        school = self.pick("school")
        if school is None:
            return None
        sessions = [s for s in self.sessions_of.get(school.id, []) if s in self.live["session"]]
        session_id = self.rng.choice(sessions) if sessions else None
        title, code, subject = self.rng.choice(_SUBJECTS)
        return self.add(
            "course",
            stamp,
            {
                "name": title,
                "code": f"{code}-{self.rng.randrange(100, 500)}",
                "grade_levels": school.data["grade_levels"],
                "subjects": [subject],
                "identifiers": [],
                "school_id": school.id,
                "session_id": session_id,
                "district_id": school.data["district_id"],
            },
        )

    def klass(self, stamp: tuple[int, int], course: _Object | None = None) -> _Object | None:
        course = course or self.pick("course")
        if course is None:
            return None
        session_id = course.data["session_id"]
        period = self.rng.randint(1, 8)
        return self.add(
            "class",
            stamp,
            {
                "name": f"{course.data['name']} - Period {period}",
                "description": None,
                "picture_url": None,
                "subjects": course.data["subjects"],
                "grade_levels": course.data["grade_levels"],
                "periods": [str(period)],
                "state": "active",
                "locale": None,
                "time_zone": None,
                "identifiers": [],
                "course_id": course.id,
                "school_id": course.data["school_id"],
                "session_ids": [session_id] if session_id is not None else [],
                "product_ids": [],
            },
        )

    def section(self, stamp: tuple[int, int], klass: _Object | None = None) -> _Object | None:
        klass = klass or self.pick("class")
        if klass is None:
            return None
        section = self.add(
            "section",
            stamp,
            {
                "name": f"Section {self.rng.choice('ABCDEF')}",
                "description": None,
                "picture_url": None,
                "state": "active",
                "locale": None,
                "time_zone": None,
                "periods": klass.data["periods"],
                "identifiers": [],
                "class_id": klass.id,
            },
        )
        self.sections_of.setdefault(klass.id, []).append(section.id)
        return section

    def person(self, stamp: tuple[int, int], role: str | None = None) -> _Object | None:
        school = self.pick("school")
        if school is None:
            return None
        rng = self.rng
        role = role or rng.choices(_ROLES, _ROLE_WEIGHTS)[0]
        first, first_slug = rng.choice(_FIRST_NAMES)
        last, last_slug = rng.choice(_LAST_NAMES)
        domain = "example.net" if role in ("parent", "guardian") else "schools.example.org"
        grades = school.data["grade_levels"]
        assert isinstance(grades, list)
        return self.add(
            "person",
            stamp,
            {
                "first_name": first,
                "middle_name": rng.choice("ABCDEJMR") if rng.random() < 0.4 else None,
                "last_name": last,
                "display_name": f"{first} {last}",
                "picture_url": None,
                "email": f"{first_slug}.{last_slug}.{self.next_serial()}@{domain}",
                "phone": f"+1-555-01{rng.randrange(100):02d}" if rng.random() < 0.3 else None,
                "roles": [role],
                "grade_levels": (levels := [rng.choice(grades)] if role == "student" else []),
                "graduation_year": _graduation_year(self.year, levels),
                "demographics": _DEMOGRAPHICS,
                "locale": "en-US",
                "time_zone": school.data["time_zone"],
                "identifiers": [],
                "school_ids": [school.id],
                "district_id": school.data["district_id"],
                "product_ids": [],
            },
        )

    def enrollment(
        self,
        stamp: tuple[int, int],
        person: _Object | None = None,
        klass: _Object | None = None,
    ) -> _Object | None:
        klass = klass or self.pick("class")
        role = "student" if self.rng.random() < 0.85 else "teacher"
        person = person or self.pick("person", lambda p: _roles(p) == [role])
        if klass is None or person is None:
            return None
        roles = person.data["roles"]
        assert isinstance(roles, list)
        sections = [s for s in self.sections_of.get(klass.id, []) if s in self.live["section"]]
        section_id = self.rng.choice(sections) if sections and self.rng.random() < 0.7 else None
        return self.add(
            "enrollment",
            stamp,
            {
                "role": roles[0],
                "primary": roles[0] == "teacher",
                "state": "active",
                "start_date": iso(to_ms(datetime(self.year, 8, 15, tzinfo=UTC))),
                "end_date": None,
                "identifiers": [],
                "class_id": klass.id,
                "section_id": section_id,
                "person_id": person.id,
            },
        )

    def agent(
        self,
        stamp: tuple[int, int],
        observer: _Object | None = None,
        target: _Object | None = None,
    ) -> _Object | None:
        observer = observer or self.pick("person", _is_observer)
        target = target or self.pick("person", lambda p: _roles(p) == ["student"])
        if observer is None or target is None:
            return None
        return self.add(
            "agent",
            stamp,
            {
                "relationship": "guardian" if _roles(observer) == ["guardian"] else "parent",
                "identifiers": [],
                "observer_id": observer.id,
                "target_id": target.id,
            },
        )

    def create(self, kind: str, stamp: tuple[int, int]) -> _Object | None:
        builders: dict[str, Callable[[tuple[int, int]], _Object | None]] = {
            "district": self.district,
            "school": self.school,
            "session": self.session,
            "course": self.course,
            "person": self.person,
            "class": self.klass,
            "section": self.section,
            "enrollment": self.enrollment,
            "agent": self.agent,
        }
        return builders[kind](stamp)

    # -- the initial graph ----------------------------------------------------

    def build(self, people: int) -> None:
        """Districts down to agents, in proportion to ``people``."""
        for _ in range(max(2, round(people / 100))):
            self.district(self.past())
        for _ in range(max(2, round(people / 40))):
            school = self.school(self.past())
            for _ in range(2):
                self.session(self.past(), school)
        for _ in range(max(3, round(people / 10))):
            course = self.course(self.past())
            for _ in range(self.rng.choice((1, 1, 2))):
                klass = self.klass(self.past(), course)
                for _ in range(self.rng.choice((1, 1, 1, 2))):
                    self.section(self.past(), klass)
        for _ in range(people):
            self.person(self.past())
        self._build_memberships()

    def _build_memberships(self) -> None:
        """Classes get a teacher, students two to four classes, parents one or two children."""
        people = [self.get("person", id_) for id_ in self.live["person"].ids()]
        teachers = [p for p in people if _roles(p) == ["teacher"]]
        students = [p for p in people if _roles(p) == ["student"]]
        classes = [self.get("class", id_) for id_ in self.live["class"].ids()]
        for klass in classes:
            if teachers:
                self.enrollment(self.past(), self.rng.choice(teachers), klass)
        by_school: dict[str, list[_Object]] = {}
        for klass in classes:
            by_school.setdefault(klass.text("school_id"), []).append(klass)
        for student in students:
            school_ids = student.data["school_ids"]
            assert isinstance(school_ids, list)
            options = by_school.get(school_ids[0]) or classes
            for klass in self.rng.sample(options, min(len(options), self.rng.randint(2, 4))):
                self.enrollment(self.past(), student, klass)
        for observer in people:
            if _is_observer(observer) and students:
                for target in self.rng.sample(students, min(len(students), self.rng.randint(1, 2))):
                    self.agent(self.past(), observer, target)

    # -- the event stream -----------------------------------------------------

    def next_change(self, ms: int) -> _Change:
        """Pick and apply one change at time ``ms``."""
        rng = self.rng
        kind = rng.choices(KINDS, _KIND_WEIGHTS)[0]
        op = rng.choices(OPS, _OP_WEIGHTS)[0]
        if op == "deleted" and len(self.live[kind]) <= _FLOOR.get(kind, 0):
            op = "updated"
        if op == "updated" and not self.live[kind]:
            op = "created"
        event_id = self.uuid()
        if op == "created":
            obj = self._revive_or_create(kind, ms)
        elif op == "updated":
            obj = self._update(self.get(kind, self.live[kind].pick(rng)), ms)
        else:
            obj = self._delete(self.get(kind, self.live[kind].pick(rng)))
        return _Change(event_id, op, obj)

    def _revive_or_create(self, kind: str, ms: int) -> _Object:
        if self.gone[kind] and self.rng.random() < _REVIVE_CHANCE:
            obj = self.get(kind, self.gone[kind].pick(self.rng))
            self.gone[kind].remove(obj.id)
            self.live[kind].add(obj.id)
            obj.deleted = False
            # Shared again: the same object, seen to change now.
            obj.data = {**obj.data, "updated_date": iso(ms)}
            return obj
        created = self.create(kind, (ms, ms))
        if created is None:
            # A missing parent (say no live class for an enrollment): a new person instead.
            created = self.person((ms, ms))
        if created is None:  # pragma: no cover - floors keep a school alive
            raise RuntimeError("no live school left to place a person in")
        return created

    def _delete(self, obj: _Object) -> _Object:
        obj.deleted = True
        self.live[obj.kind].remove(obj.id)
        self.gone[obj.kind].add(obj.id)
        return obj

    def _update(self, obj: _Object, ms: int) -> _Object:
        obj.data = {**obj.data, **self._changes(obj), "updated_date": iso(ms)}
        return obj

    def _changes(self, obj: _Object) -> Json:
        rng = self.rng
        data = obj.data
        match obj.kind:
            case "district":
                city, _slug = rng.choice(_CITIES)
                return {"name": f"{city} Unified School District {self.next_serial()}"}
            case "school":
                level = next(lv for lv, _ in _SCHOOL_LEVELS if _text(data, "name").endswith(lv))
                return {"name": f"{rng.choice(_SCHOOL_NAMES)} {level}"}
            case "session":
                others = [s for s in _SESSION_STATES if s != data["state"]]
                return {"state": rng.choice(others)}
            case "course":
                return {"code": f"{_text(data, 'code').split('-')[0]}-{rng.randrange(100, 500)}"}
            case "person":
                return self._person_changes(data)
            case "class":
                period = rng.randint(1, 8)
                course_name = _text(data, "name").rsplit(" - Period ", 1)[0]
                return {"name": f"{course_name} - Period {period}", "periods": [str(period)]}
            case "section":
                return {"name": f"Section {rng.choice('ABCDEFGH')}"}
            case "enrollment":
                state = rng.choice([s for s in _ENROLLMENT_STATES if s != data["state"]])
                end = iso(to_ms(datetime(self.year + 1, 6, 10, tzinfo=UTC)))
                return {"state": state, "end_date": None if state == "active" else end}
            case _:
                swapped = "guardian" if data["relationship"] == "parent" else "parent"
                return {"relationship": swapped}

    def _person_changes(self, data: Json) -> Json:
        rng = self.rng
        choice = rng.randrange(4)
        if choice == 0:
            local = _text(data, "email").split("@")[0]
            return {"email": f"{local}@mail.example.org"}
        if choice == 1:
            last, _slug = rng.choice(_LAST_NAMES)
            return {"last_name": last, "display_name": f"{data['first_name']} {last}"}
        if choice == 2:
            return {"middle_name": None if data["middle_name"] else rng.choice("ABCDEJMR")}
        return {"phone": f"+1-555-02{rng.randrange(100):02d}"}


class EdlinkGraph:
    """The Edlink side of the simulator: current objects plus the event log.

    Readers needing a consistent view (count, positions, live ids) hold
    ``locked()``; events and object bodies are rendered once, when they change.
    ``clock`` is the Edlink wall clock: growth events take its time, the HTTP
    layer measures retention and cursor expiry with it.

    The initial graph and history are built on first use (their end instant is
    fixed here), so simulators that only serve DreamApply do not pay for them.
    """

    def __init__(
        self,
        people: int = 200,
        events: int | None = None,
        seed: int = 0,
        *,
        history_days: float = 10.0,
        start: datetime | None = None,
        clock: Callable[[], datetime] = utc_now,
        legacy_shape: bool = False,
    ) -> None:
        if people < 0 or (events is not None and events < 0) or history_days < 0:
            raise ValueError("people, events and history_days must not be negative")
        self.clock = clock
        self.legacy_shape = legacy_shape
        end = to_ms(clock() if start is None else start)
        history = round(history_days * _DAY_MS)
        self._lock = threading.RLock()
        self._events: list[_Event] = []
        self._timestamps: list[int] = []
        self._positions: dict[str, int] = {}
        self._sorted: dict[str, list[str]] = {}
        self._generator = _Generator(seed, end - history)
        count = _EVENTS_PER_PERSON * people if events is None else events
        self._pending: tuple[int, int, int, int] | None = (people, count, end - history, end)
        self._seed = seed
        # One integration and one materialization serve the whole stream.
        self._integration_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"edsync-sim-integration-{seed}"))
        self._materialization_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"edsync-sim-materialization-{seed}")
        )

    def _ready(self) -> None:
        """Build the initial graph and history once, on first use (double-checked)."""
        if self._pending is None:
            return
        with self._lock:
            if self._pending is None:
                return
            people, count, begin, end = self._pending
            # Dates get their own RNG so ids and data do not depend on how a stream was grown.
            timing = random.Random(f"edlink-dates-{self._seed}")  # noqa: S311
            step = (end - begin) / count if count else 0.0
            with _gc_paused(people + count >= _GC_PAUSE_FROM):
                self._generator.build(people)
                for obj in self._generator.objects.values():
                    obj.body = orjson.dumps(obj.data)
                for i in range(count):
                    self._add(begin + int((i + timing.random()) * step))
            # Cleared last: a concurrent reader waits on the lock instead of seeing half.
            self._pending = None

    # -- the test oracle ------------------------------------------------------

    def append(self, n: int) -> None:
        """Generate ``n`` more events, dated now by the Edlink clock."""
        self._ready()
        now = self.now_ms()
        with self._lock, _gc_paused(n >= _GC_PAUSE_FROM):
            for _ in range(n):
                # Never before the newest event: the stream stays in chronological order.
                self._add(max(now, self._timestamps[-1] if self._timestamps else now))

    @property
    def events_count(self) -> int:
        self._ready()
        return len(self._events)

    def head(self) -> str | None:
        """The newest event's id (retained or not), or None before any event."""
        self._ready()
        with self._lock:
            return self._events[-1].id if self._events else None

    def graph(self) -> dict[tuple[str, str], GraphTruth]:
        """Every object ever seen, keyed by (kind, id); deleted ones keep their last data."""
        self._ready()
        with self._lock:
            return {
                key: GraphTruth(obj.deleted, obj.data)
                for key, obj in self._generator.objects.items()
            }

    # -- what the HTTP layer reads --------------------------------------------

    def now_ms(self) -> int:
        return to_ms(self.clock())

    @contextmanager
    def locked(self) -> Iterator[EdlinkGraph]:
        """Hold this while using the readers below, for one consistent view."""
        self._ready()
        with self._lock:
            yield self

    def retained_from(self, now_ms: int) -> int:
        """Position of the oldest event not yet destroyed by retention at ``now_ms``."""
        cutoff = now_ms - RETENTION // timedelta(milliseconds=1)
        return bisect_left(self._timestamps, cutoff)

    def position(self, event_id: str) -> int | None:
        return self._positions.get(event_id)

    def event_bodies(self, start: int, stop: int) -> list[bytes]:
        return [event.body for event in self._events[start:stop]]

    def live_ids(self, kind: str) -> Sequence[str]:
        """Ids of the current (non-deleted) objects of ``kind``, sorted: the list order."""
        ids = self._sorted.get(kind)
        if ids is None:
            ids = self._sorted[kind] = sorted(self._generator.live[kind].ids())
        return ids

    def current(self, kind: str, id_: str) -> tuple[Mapping[str, object], bytes]:
        """An object's data and its rendered JSON."""
        obj = self._generator.get(kind, id_)
        return obj.data, obj.body

    # -- internals ----------------------------------------------------------

    def _add(self, ms: int) -> None:
        change = self._generator.next_change(ms)
        obj = change.obj
        if change.op != "updated":
            self._sorted.pop(obj.kind, None)
        if change.op != "deleted":
            obj.body = orjson.dumps(obj.data)
        if self.legacy_shape:
            event: Json = {
                "id": change.event_id,
                "type": f"{obj.kind}.{change.op}",
                "data": obj.data,
                "created_date": iso(ms),
            }
        else:
            event = {
                "id": change.event_id,
                "date": iso(ms),
                "type": change.op,
                "target": obj.kind,
                "target_id": obj.id,
                "integration_id": self._integration_id,
                "materialization_id": self._materialization_id,
                "data": obj.data,
            }
        self._positions[change.event_id] = len(self._events)
        self._events.append(_Event(change.event_id, ms, orjson.dumps(event)))
        self._timestamps.append(ms)
