"""The documented scalar fields of each feed kind's entities: the typed columns
of the mirror's views, and how each value is read out of a record's data
(``typed_values``) when the record is written, into ``records.typed``, which
the views read (``mirror/views.py``).

One table per kind: entity → (plural used in view names, fields). Each field
is column name → JSON path in ``records.data`` → type. The fields come from
the vendors' documents, not from our simulator:

- DreamApply: the SDK's models (dream-group/dream-apply-sdk ``gen/Models``:
  Applicant, ApplicantName, Application, Offer, Invoice, ApplicationTask,
  BinaryRecord) and help.dreamapply.com/api (an offer's ``inserted``,
  ``saved`` and ``confirmed`` are ISO strings there, ints in the SDK's
  docblocks). A record's data is the resource as its endpoint answers it
  (SPEC 2.1); a link column accepts a link or an expanded object (``link``);
  the applicant is the record's ``person_id`` (``person``): an offer carries
  no applicant link of its own. A child's ``application`` is the one it was
  read under. References: help.dreamapply.com/api/api_applications_id_references.
  Media and interviews have no endpoint, so no records and no view: their
  events stay in the ledger.
- Edlink: edlink/edlink-node-sdk ``src/types`` and edlink/docs
  ``api/v2.0/models``. The docs type an enrollment's ``role`` as ``Role[]``
  but show a string: the column holds the string, or a list as its JSON text.

Nearly a leaf: it imports only the model's JSON writer and DreamApply's
link reader.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from edsync.model import dump_json
from edsync.sources.dreamapply.names import ref_id

FieldType = Literal["text", "integer", "boolean", "timestamp", "link", "person"]
"""What a column holds (``typed_values`` reads each from the record's data):

- ``text``: a string as it is; another value as its JSON text.
- ``integer``: an integer that fits a bigint; a fraction, a larger number or
  another type holds nothing (PostgreSQL's cast would round or raise).
- ``boolean``: ``true`` or ``false`` only.
- ``timestamp``: an ISO 8601 date or date-time as the vendor wrote it; one
  Python reads in another ISO form is written in the plain one; anything
  else (a month 13, PHP's zero date "-0001-11-30", an offset PostgreSQL
  refuses) holds nothing.
- ``link``: a DreamApply reference, a link (``/api/applicants/12``) or an
  expanded object (``{"id": 12}``), held as its id in text like
  ``records.entity_id``: the link's trailing digits, the object's ``id``.
- ``person``: the record's ``person_id`` column, which the apply step reads
  from the same link (or, for a snapshotted offer, from its application)."""


@dataclass(frozen=True, slots=True)
class Field:
    column: str
    path: tuple[str, ...]
    type: FieldType


def _f(column: str, path: str, type_: FieldType = "text") -> Field:
    return Field(column, tuple(path.split(".")), type_)


def _link(column: str, path: str) -> Field:
    return _f(column, path, "link")


_APPLICANT = Field("applicant_id", (), "person")
_APPLICATION = _link("application_id", "application")

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
            # A request to be forgotten awaiting DreamApply's deletion (SPEC 5.4).
            _f("forget_requested", "forget_requested", "timestamp"),
        ),
    ),
    "application": (
        "applications",
        (
            _APPLICANT,
            _f("status", "status"),
            _f("commence_year", "commence_year"),
            _link("academic_term_id", "academic_term"),
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
            _link("course_id", "course"),
            _link("type_id", "type"),
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
            _link("course_id", "course"),
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
            _f("title", "title"),
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
    # help.dreamapply.com/api/api_applications_id_references
    "reference": (
        "references",
        (
            _APPLICATION,
            _APPLICANT,
            _f("referee_name", "invitation.name"),
            _f("referee_email", "invitation.email"),
            _f("invited", "invited", "timestamp"),
            _f("accessed", "accessed", "timestamp"),
            _f("committed", "committed", "timestamp"),
        ),
    ),
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


# -- the values of the columns, read once when a record is written ----------

TYPED_FORMAT = 1
"""Bumped when what ``typed_values`` holds changes without the fields
changing: the views' definitions carry it, so ``db upgrade`` (or a start
that auto-migrates) finds them outdated and computes every record's values
again."""

_BIGINT = (-(2**63), 2**63 - 1)
# The ISO forms PostgreSQL reads as Python does; another form Python reads
# (``20260102T0304``, a week date) is written again in this one.
_ISO = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,6})?)?)?"
    r"(?:Z|[+-](?:0\d|1[0-5])(?::?\d\d)?)?",
    re.ASCII,
)
# PostgreSQL refuses an offset of 16 hours or more; Python reads up to 24.
_MAX_OFFSET = dt.timedelta(hours=16)


def _text(value: object) -> str:
    return value if isinstance(value, str) else dump_json(value)


def _integer(value: object) -> int | None:
    if type(value) is int and _BIGINT[0] <= value <= _BIGINT[1]:
        return value
    return None


def _boolean(value: object) -> bool | None:
    return value if type(value) is bool else None


def _timestamp(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if _ISO.fullmatch(value):
        return value  # the common case: PostgreSQL reads it as it is
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) >= _MAX_OFFSET:
        return None
    return parsed.isoformat()


def _link_id(value: object) -> str | None:
    """As the journal reads a link, and a bare number as its own id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ref_id(value)


_READ: dict[FieldType, Callable[[object], object]] = {
    "text": _text,
    "integer": _integer,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "link": _link_id,
}

Reader = tuple[str, str, tuple[str, ...], Callable[[object], object]]
"""A column, the first key of its path, the rest of the path, how it is read."""


def typed_values(readers: Sequence[Reader], data: Mapping[str, object]) -> dict[str, object]:
    """The columns' values in ``data`` (a column with none is left out)."""
    typed: dict[str, object] = {}
    for column, key, rest, read in readers:
        value = data.get(key)
        for inner in rest:
            value = value.get(inner) if isinstance(value, dict) else None
        if value is not None and (value := read(value)) is not None:
            typed[column] = value
    return typed


def readers(kind: str) -> dict[str, tuple[Reader, ...]]:
    """Entity → how each of its columns is read, for a feed kind (none for a
    kind without views). ``person`` columns are the record's, not read here."""
    return {
        entity: tuple(
            (f.column, f.path[0], f.path[1:], _READ[f.type]) for f in fields if f.type != "person"
        )
        for entity, (_, fields) in KINDS.get(kind, {}).items()
    }


def typer(kind: str) -> Callable[[str, Mapping[str, object]], str | None]:
    """``(entity, data)`` → the JSON of its columns' values (``records.typed``),
    or None for an entity without a view."""
    by_entity = readers(kind)

    def typed_json(entity: str, data: Mapping[str, object]) -> str | None:
        found = by_entity.get(entity)
        return None if found is None else dump_json(typed_values(found, data))

    return typed_json
