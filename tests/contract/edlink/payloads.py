"""Edlink payloads written by hand from the vendor's own documents: the authority
the product and the simulator are held to (not the simulator).

Sources, at the commits read (2026-12):
- edlink/docs ``api/v2.0/models/external/<kind>.md`` (property tables and JSON
  examples), ``api/v2.0/models/internal/event.md``, ``api/v2.0/graph/events.md``,
  ``api/v2.0/graph/<plural>.md`` (sample list responses),
  ``api/v2.0/responses/errors.md``, ``guides/v2.0/errors-warnings.md``;
- edlink/edlink-node-sdk ``src/types/*.ts`` (fields the docs' examples leave
  out: ``identifiers``, ``picture_url``, ``product_ids``, ``graduation_year``…);
- the older event form: edsync's seed copy of Edlink's "Event" page
  (``shared/seeds/edlink-event.txt``), ``"type": "organization.created"``.

The docs' examples use the all-zero UUID everywhere; the ids here are distinct
so that one mirror can hold every object. Otherwise the values are the docs'
own, except where a comment says so (a picture URL, one enrollment's role).
Where the docs and the SDK disagree the docs win and the comment says what
the SDK has instead (District/School ``location`` vs the SDK's ``address``).
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

DISTRICT_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a01"
SCHOOL_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a02"
SESSION_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a03"
COURSE_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a04"
PERSON_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a05"
PARENT_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a06"
CLASS_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a07"
SECTION_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a08"
ENROLLMENT_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a09"
AGENT_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2a10"
INTEGRATION_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2aa1"
MATERIALIZATION_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2aa2"
REQUEST_ID = "1d0c2f1e-6b9a-4f4e-9a51-0d7c1b3e2aff"

# -- objects: one of each kind the Graph lists -----------------------------------------

OBJECTS: dict[str, Json] = {
    # docs models/external/district.md JSON example (`location`, as the docs and
    # their sample responses say; the SDK's District calls it `address`), plus
    # `identifiers` (docs table) and `picture_url` (SDK district.ts). The
    # example's `"location": {}` is null here (SDK: `Address | null`).
    "district": {
        "id": DISTRICT_ID,
        "created_date": "2021-07-05T20:32:40.454Z",
        "updated_date": "2021-07-12T21:44:23.126Z",
        "name": "Gravity Falls School District",
        "picture_url": None,
        "locale": "en",
        "time_zone": "America/Los_Angeles",
        "location": None,
        "properties": {},
        "identifiers": [],
    },
    # docs models/external/school.md JSON example (`location`; SDK: `address`),
    # plus `identifiers` (docs table), `picture_url` and `product_ids` (SDK school.ts).
    # The examples' `"location": {}` is null here: no address known.
    "school": {
        "id": SCHOOL_ID,
        "created_date": "2021-07-05T20:32:40.454Z",
        "updated_date": "2021-07-12T21:44:23.126Z",
        "name": "Springfield Elementary School",
        "grade_levels": ["01", "02", "03", "04", "05"],
        "picture_url": None,
        "locale": "en",
        "time_zone": "America/Chicago",
        "location": None,
        "properties": {},
        "identifiers": [],
        "district_id": DISTRICT_ID,
        "product_ids": [],
    },
    # docs models/external/session.md JSON example, plus `identifiers` (table).
    "session": {
        "id": SESSION_ID,
        "created_date": "2021-07-13T17:45:27.548Z",
        "updated_date": "2021-07-13T17:45:27.548Z",
        "name": "Fall 2021",
        "start_date": "2021-07-01T00:00:00.000Z",
        "end_date": "2022-01-01T00:00:00.000Z",
        "state": "active",
        "type": "semester",
        "properties": {},
        "identifiers": [],
        "school_id": SCHOOL_ID,
        "district_id": DISTRICT_ID,
    },
    # docs models/external/course.md JSON example, plus `identifiers` (table).
    "course": {
        "id": COURSE_ID,
        "created_date": "2021-07-13T17:45:27.570Z",
        "updated_date": "2021-07-13T17:45:27.570Z",
        "name": "Data Structures & Algorithms",
        "code": "CS 425",
        "grade_levels": [],
        "subjects": ["CEDS.21"],
        "properties": {},
        "identifiers": [],
        "session_id": SESSION_ID,
        "school_id": SCHOOL_ID,
        "district_id": DISTRICT_ID,
    },
    # docs models/external/person.md JSON example (demographics spelled out from
    # models/external/demographics.md), plus `identifiers` (table) and
    # `product_ids` (SDK person.ts).
    "person": {
        "id": PERSON_ID,
        "created_date": "2021-07-13T17:45:39.937Z",
        "updated_date": "2021-07-13T17:45:39.937Z",
        "first_name": "George",
        "middle_name": "Oscar",
        "last_name": "Bluth",
        "display_name": "Gob Bluth",
        "picture_url": "https://example.com/gob.jpg",  # the docs link a real image
        "roles": ["student"],
        "email": "gob.bluth@example.com",
        "phone": "12345556789",
        "locale": "en",
        "time_zone": "America/Los_Angeles",
        "graduation_year": 1996,
        "grade_levels": ["PS"],
        "demographics": {
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
        },
        "properties": {},
        "identifiers": [],
        "district_id": DISTRICT_ID,
        "school_ids": [SCHOOL_ID],
        "product_ids": [],
    },
    # docs models/external/class.md JSON example, plus `identifiers` (table) and
    # `product_ids` (SDK class.ts).
    "class": {
        "id": CLASS_ID,
        "created_date": "2021-07-13T17:45:27.685Z",
        "updated_date": "2021-07-13T17:45:27.685Z",
        "name": "Defense Against the Dark Arts",
        "description": None,
        "picture_url": None,
        "grade_levels": ["06"],
        "subjects": ["CEDS.08"],
        "periods": ["1"],
        "state": "active",
        "locale": None,
        "time_zone": None,
        "properties": {},
        "identifiers": [],
        "session_ids": [SESSION_ID],
        "course_id": COURSE_ID,
        "school_id": SCHOOL_ID,
        "product_ids": [],
    },
    # docs models/external/section.md JSON example, plus `identifiers` (table).
    "section": {
        "id": SECTION_ID,
        "created_date": "2021-07-13T17:45:27.645Z",
        "updated_date": "2021-07-13T17:45:27.645Z",
        "name": "Section 3",
        "description": None,
        "picture_url": None,
        "state": "active",
        "locale": "en",
        "time_zone": "America/Chicago",
        "properties": {},
        "identifiers": [],
        "periods": ["06"],
        "class_id": CLASS_ID,
    },
    # docs models/external/enrollment.md JSON example (role "student" here, so the
    # enrollment names a student), plus `identifiers` (table).
    "enrollment": {
        "id": ENROLLMENT_ID,
        "created_date": "2021-07-13T17:45:27.674Z",
        "updated_date": "2021-07-13T17:45:27.674Z",
        "start_date": None,
        "end_date": None,
        "role": "student",
        "primary": None,
        "state": "active",
        "properties": {},
        "identifiers": [],
        "person_id": PERSON_ID,
        "class_id": CLASS_ID,
        "section_id": SECTION_ID,
    },
    # docs models/external/agent.md JSON example: the link is `relationship`
    # (SDK agent.ts agrees), plus dates (SDK) and `identifiers` (table).
    "agent": {
        "id": AGENT_ID,
        "created_date": "2021-07-13T17:45:27.700Z",
        "updated_date": "2021-07-13T17:45:27.700Z",
        "relationship": "parent",
        "properties": {},
        "identifiers": [],
        "observer_id": PARENT_ID,
        "target_id": PERSON_ID,
    },
}

PLURALS = {
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


def list_page(kind: str, next_url: str | None = None) -> Json:
    """docs api/v2.0/graph/<plural>.md "Sample Response": ``$data``, ``$request``;
    ``$next`` when there is more (guides/v2.0/paginated-requests.md)."""
    page: Json = {"$data": [OBJECTS[kind]], "$request": REQUEST_ID}
    if next_url is not None:
        page["$next"] = next_url
    return page


# -- events -------------------------------------------------------------------------

# docs api/v2.0/models/internal/event.md (and graph/events.md "Sample Response"):
# one event per EventTarget (models/internal/enums/event-target.md), in the order
# a stream would carry them; the agent is deleted and keeps its last data.
V2_EVENTS: list[Json] = [
    {
        "id": f"5e1a7c7e-0b6f-4d7e-8f57-4c0a3c1b{n:04d}",
        "date": f"2021-07-26T06:15:{n:02d}.179Z",
        "type": op,
        "target": kind,
        "target_id": OBJECTS[kind]["id"],
        "integration_id": INTEGRATION_ID,
        "materialization_id": MATERIALIZATION_ID,
        "data": OBJECTS[kind],
    }
    for n, (kind, op) in enumerate(
        [
            ("district", "created"),
            ("school", "created"),
            ("session", "created"),
            ("course", "updated"),
            ("person", "created"),
            ("class", "created"),
            ("section", "updated"),
            ("enrollment", "created"),
            ("agent", "deleted"),
        ],
        start=1,
    )
]


def events_page(events: list[Json]) -> Json:
    """docs api/v2.0/graph/events.md "Sample Response"."""
    return {"$data": events, "$request": REQUEST_ID}


# The seed's older form: `"type": "<entity>.<op>"`, `created_date`, no target.
# The first is the seed's own JSON example, verbatim; the others follow its
# text ("person.created", "organization.deleted"; data is an Organization,
# Term, Person or Enrollment).
LEGACY_EVENTS: list[Json] = [
    {
        "id": "237704e0-4f6d-49c3-9d39-1bbb1105d721",
        "type": "organization.created",
        "data": {
            "id": "9deba326-97b5-447a-8f42-7b53183cbbbd",
            "name": "Edlink University",
            "locale": None,
            "location": None,
            "time_zone": "America/Denver",
            "properties": {},
            "created_date": "2021-07-13T18:24:51.657262+00:00",
            "updated_date": "2021-07-13T18:24:51.657262+00:00",
            "source": {"id": "5d149266-95d2-42cf-8660-8b528b3bfba3"},
            "type": "district",
            "entity": None,
            "state": "active",
            "icon_url": None,
            "parent_id": None,
            "parent_type": None,
        },
        "created_date": "2021-07-13T18:24:51.657Z",
    },
    {
        "id": "237704e0-4f6d-49c3-9d39-1bbb1105d722",
        "type": "term.created",
        "data": {"id": "9deba326-97b5-447a-8f42-7b53183cbbc0", "name": "Fall 2021"},
        "created_date": "2021-07-13T18:24:52.000Z",
    },
    {
        "id": "237704e0-4f6d-49c3-9d39-1bbb1105d723",
        "type": "person.created",
        "data": OBJECTS["person"],
        "created_date": "2021-07-13T18:24:53.000Z",
    },
    {
        "id": "237704e0-4f6d-49c3-9d39-1bbb1105d724",
        "type": "enrollment.updated",
        "data": OBJECTS["enrollment"],
        "created_date": "2021-07-13T18:24:54.000Z",
    },
    {
        "id": "237704e0-4f6d-49c3-9d39-1bbb1105d725",
        "type": "organization.deleted",
        "data": {"id": "9deba326-97b5-447a-8f42-7b53183cbbbd", "name": "Edlink University"},
        "created_date": "2021-07-13T18:24:55.000Z",
    },
]

# -- errors -------------------------------------------------------------------------

# docs api/v2.0/responses/errors.md: every code, all HTTP 400, with its text;
# the body as guides/v2.0/errors-warnings.md shows it.
ERRORS: dict[str, str] = {
    "UNKNOWN": "The server encountered an unexpected condition which prevented it "
    "from fulfilling the request.",
    "INTERNAL": "The server encountered an unexpected condition which prevented it "
    "from fulfilling the request.",
    "UNKNOWN_PROVIDER": "Edlink could not find the proper provider for the authenticated "
    "person or integration.",
    "INVALID_TOKEN": "You must supply a valid access token to access this endpoint.",
    "EXPIRED_TOKEN": "The token you provided, while it was valid at some point, is now expired.",
    "UNSHARED_TOKEN": "The person that this token is associated with is no longer shared "
    "with the integration.",
    "INVALID_PROVIDER_TOKEN": "The person that the token belongs to has not signed in to "
    "Edlink with their provider account.",
    "INVALID_INTEGRATION_STATE": "The integration associated with the provided access token "
    "is not in the correct state to perform the requested action.",
    "INVALID_UUID": "You have provided a UUID in an invalid format.",
    "UNSUPPORTED_OPERATION": "The current provider does not support the requested operation.",
    "NOT_FOUND": "The requested resource could not be found.",
    "NO_PERMISSION": "The person that the token belongs to does not have permission to "
    "perform the requested action.",
    "IDEMPOTENCY_KEY_TOO_LONG": "The supplied $idempotency key may not be longer than 255 "
    "characters.",
    "INVALID_CURSOR": "The supplied cursor is invalid.",
    "INVALID_PAGE_SIZE": "For rostering endpoints, the requested page size must be between "
    "1 and 10000.",
    "ENTITY_NOT_PRESENT_IN_SOURCE": "The current user or class is not present in the source "
    "system.",
    "INVALID_SUBMISSION_TYPE": "One or more submission_types are invalid.",
    "MISSING_REQUIRED_FIELD": "One or more required fields are missing.",
    "INVALID_ASSIGNEES": "One or more assignee_ids must be provided when the assignee_mode "
    "is individual.",
}


def error_body(*codes: str) -> Json:
    """guides/v2.0/errors-warnings.md: ``$request`` and a list of ``$errors``."""
    return {
        "$request": REQUEST_ID,
        "$errors": [{"code": code, "message": ERRORS.get(code, code)} for code in codes],
    }
