"""The documented scalar fields of each feed kind's entities: the typed columns
of the mirror's views (``mirror/views.py`` turns them into SQL).

One table per kind: entity → (plural used in view names, fields). Each field
is column name → JSON path in ``records.data`` → type. The fields come from
the vendors' documents, not from our simulator:

- DreamApply: the SDK's models (dream-group/dream-apply-sdk ``gen/Models``:
  Applicant, ApplicantName, Application, Offer, Invoice, ApplicationTask,
  BinaryRecord) and help.dreamapply.com/api (an offer's ``inserted``,
  ``saved`` and ``confirmed`` are ISO strings there, ints in the SDK's
  docblocks). A record's data is the expanded object or the journal item's
  links, so every link column accepts both (``link``); the applicant is the
  record's ``person_id`` (``person``): an offer carries no applicant link of
  its own. ``status`` is the one the journal name carries
  (SPEC 2.1) or, for an application, the vendor's own field. Media,
  interviews and referees have no published model: only their links.
- Edlink: edlink/edlink-node-sdk ``src/types`` and edlink/docs
  ``api/v2.0/models``. The docs type an enrollment's ``role`` as ``Role[]``
  but show a string: the column holds it when it is one.

Leaf module: nothing here imports anything of edsync's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FieldType = Literal["text", "integer", "boolean", "timestamp", "link", "person"]
"""``link``: a DreamApply reference, a link (``/api/applicants/12``) or an
expanded object (``{"id": 12}``); the column holds the id as text, like
``records.entity_id``: a link's trailing digits, an object's ``id``. A link
field declares the prefix its links have in the journal (``prefix``:
``/api/applications/``, from the vendor's examples), which the view reads
first, cheaply; any other form (``/api/v9/applications/321``) reads the same,
slower. ``person``: the record's ``person_id`` column, which
the apply step reads from the same link (or, for a snapshotted offer, from
its application), so no JSON is read at all."""


_PREFIX = re.compile(r"/[A-Za-z0-9/.-]*/")
"""What a link prefix may be: ASCII, starting and ending with a slash (no
digit at either end, no LIKE wildcard, nothing SQL quotes)."""


@dataclass(frozen=True, slots=True)
class Field:
    column: str
    path: tuple[str, ...]
    type: FieldType
    prefix: str = ""  # a link's common form: the prefix before its id

    def __post_init__(self) -> None:
        if self.prefix and (self.type != "link" or not _PREFIX.fullmatch(self.prefix)):
            raise ValueError(f"{self.column}: {self.prefix!r} is not a link prefix")


def _f(column: str, path: str, type_: FieldType = "text", prefix: str = "") -> Field:
    return Field(column, tuple(path.split(".")), type_, prefix)


def _link(column: str, path: str, resource: str) -> Field:
    """A link to ``resource``, declared in its common form ``/api/{resource}/{id}``:
    the journal's links and the vendor's examples (``/api/courses/1``). The
    vendor's objects also show links with the API version (``/api/v4/…``):
    those read the same, through the view's slower general expression."""
    return _f(column, path, "link", f"/api/{resource}/")


_APPLICANT = Field("applicant_id", (), "person")
_APPLICATION = _link("application_id", "application", "applications")

DREAMAPPLY: dict[str, tuple[str, tuple[Field, ...]]] = {
    "applicant": (
        "applicants",
        (
            _f("email", "email"),
            _f("given_name", "name.given"),
            _f("middle_name", "name.middle"),
            _f("family_name", "name.family"),
            _f("full_name", "name.full"),
            _f("phone", "phone"),
            _f("citizenship", "citizenship"),
            _f("reference", "reference"),
            _f("matriculation", "matriculation"),
            _f("type", "type"),
            _f("status", "status"),
            _f("registered", "registered", "timestamp"),
        ),
    ),
    "application": (
        "applications",
        (
            _APPLICANT,
            _f("status", "status"),
            _f("commence_year", "commence_year"),
            _link("academic_term_id", "academic_term", "academic-terms"),
            _f("created", "created", "timestamp"),
            _f("revised", "revised", "timestamp"),
            _f("submitted", "submitted", "timestamp"),
        ),
    ),
    "offer": (
        "offers",
        (
            _APPLICATION,
            _APPLICANT,
            _f("status", "status"),
            _link("course_id", "course", "courses"),
            _link("type_id", "type", "applications/offers/types"),
            _f("priority", "priority", "integer"),
            _f("decision", "decision"),
            _f("decision_policy", "decision-policy"),
            _f("decision_deadline", "decision-deadline", "timestamp"),
            _f("inserted", "inserted", "timestamp"),
            _f("saved", "saved", "timestamp"),
            _f("confirmed", "confirmed", "timestamp"),
        ),
    ),
    "invoice": (
        "invoices",
        (
            _APPLICATION,
            _APPLICANT,
            _link("course_id", "course", "courses"),
            _f("nr", "nr"),
            _f("currency", "currency"),
            _f("issued", "issued", "timestamp"),
            _f("deadline", "deadline", "timestamp"),
            _f("delivered", "delivered", "timestamp"),
            _f("reminded", "reminded", "timestamp"),
            _f("collected", "collected", "timestamp"),
        ),
    ),
    "task": (
        "tasks",
        (
            _APPLICATION,
            _APPLICANT,
            _f("status", "status"),
            _f("class", "class"),
            _f("created", "created", "timestamp"),
            _f("committed", "committed", "timestamp"),
            _f("reminded", "reminded", "timestamp"),
            _f("resolved", "resolved", "timestamp"),
        ),
    ),
    "document": (
        "documents",
        (
            _APPLICATION,
            _APPLICANT,
            _f("name", "name"),
            _f("mime", "mime"),
            _f("size", "size", "integer"),
            _f("uploaded", "uploaded", "timestamp"),
        ),
    ),
    "media": ("media", (_APPLICATION, _APPLICANT)),
    "interview": ("interviews", (_APPLICATION, _APPLICANT)),
    "referee": ("referees", (_APPLICATION, _APPLICANT)),
}

_DATES = (
    _f("created_date", "created_date", "timestamp"),
    _f("updated_date", "updated_date", "timestamp"),
)
_PLACE = (_f("locale", "locale"), _f("time_zone", "time_zone"), _f("picture_url", "picture_url"))

EDLINK: dict[str, tuple[str, tuple[Field, ...]]] = {
    "district": ("districts", (_f("name", "name"), *_PLACE, *_DATES)),
    "school": ("schools", (_f("name", "name"), _f("district_id", "district_id"), *_PLACE, *_DATES)),
    "session": (
        "sessions",
        (
            _f("name", "name"),
            _f("type", "type"),
            _f("state", "state"),
            _f("start_date", "start_date", "timestamp"),
            _f("end_date", "end_date", "timestamp"),
            _f("school_id", "school_id"),
            _f("district_id", "district_id"),
            *_DATES,
        ),
    ),
    "course": (
        "courses",
        (
            _f("name", "name"),
            _f("code", "code"),
            _f("district_id", "district_id"),
            _f("school_id", "school_id"),
            _f("session_id", "session_id"),
            *_DATES,
        ),
    ),
    "person": (
        "people",
        (
            _f("first_name", "first_name"),
            _f("middle_name", "middle_name"),
            _f("last_name", "last_name"),
            _f("display_name", "display_name"),
            _f("email", "email"),
            _f("phone", "phone"),
            _f("graduation_year", "graduation_year", "integer"),
            _f("district_id", "district_id"),
            *_PLACE,
            *_DATES,
        ),
    ),
    "class": (
        "classes",
        (
            _f("name", "name"),
            _f("description", "description"),
            _f("state", "state"),
            _f("course_id", "course_id"),
            _f("school_id", "school_id"),
            *_PLACE,
            *_DATES,
        ),
    ),
    "section": (
        "sections",
        (
            _f("name", "name"),
            _f("description", "description"),
            _f("state", "state"),
            _f("class_id", "class_id"),
            *_PLACE,
            *_DATES,
        ),
    ),
    "enrollment": (
        "enrollments",
        (
            _f("person_id", "person_id"),
            _f("class_id", "class_id"),
            _f("section_id", "section_id"),
            _f("role", "role"),
            _f("state", "state"),
            _f("is_primary", "primary", "boolean"),
            _f("start_date", "start_date", "timestamp"),
            _f("end_date", "end_date", "timestamp"),
            *_DATES,
        ),
    ),
    "agent": (
        "agents",
        (
            _f("observer_id", "observer_id"),
            _f("target_id", "target_id"),
            _f("relationship", "relationship"),
            *_DATES,
        ),
    ),
}

KINDS: dict[str, dict[str, tuple[str, tuple[Field, ...]]]] = {
    "dreamapply": DREAMAPPLY,
    "edlink": EDLINK,
}
"""Feed kind → entity → (plural, fields); a kind missing here gets no views."""
