"""Edlink's records as the mirror holds them: the typed columns of its views,
and what an erasure keeps (the ids an object names).

Entity → (plural used in view names, fields), from edlink/edlink-node-sdk
``src/types`` and edlink/docs ``api/v2.0/models``. The docs type an
enrollment's ``role`` as ``Role[]`` but show a string: the column holds the
string, or a list as its JSON text.
"""

from __future__ import annotations

from edsync.kinds import Entity, Field, Records

_f = Field.at

_DATES = (
    _f("created_date", "created_date", "timestamp"),
    _f("updated_date", "updated_date", "timestamp"),
)
_PLACE = (_f("locale", "locale"), _f("time_zone", "time_zone"), _f("picture_url", "picture_url"))

ENTITIES: dict[str, Entity] = {
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


def is_id(key: str, value: str) -> bool:
    """Whether an erasure keeps a string: the id of another Graph object
    (``class_id``, an event's ``target_id``) or the kind an event is about
    (``target``); they name things, not the person."""
    return key.endswith("_id") or key == "target"


RECORDS = Records(entities=ENTITIES, ids=is_id)
