"""Edlink Graph objects as its models document them, for the typed views.

Copied in shape from the JSON examples of edlink/docs ``api/v2.0/models/external``:
person.md, enrollment.md, agent.md and section.md (the section's ``class_id``
is edlink/edlink-node-sdk ``src/types/section.ts``'s; the docs' example has none).
"""

from __future__ import annotations

from typing import Any

ZERO = "00000000-0000-0000-0000-000000000000"

PERSON: dict[str, Any] = {
    "id": ZERO,
    "created_date": "2021-07-13T17:45:39.937Z",
    "updated_date": "2021-07-13T17:45:39.937Z",
    "first_name": "George",
    "middle_name": "Oscar",
    "last_name": "Bluth",
    "display_name": "Gob Bluth",
    "picture_url": "https://static.example.org/gob.jpg",
    "roles": ["student"],
    "email": "gob.bluth@example.com",
    "phone": "12345556789",
    "locale": "en",
    "time_zone": "America/Los_Angeles",
    "graduation_year": 1996,
    "grade_levels": ["PS"],
    "demographics": {},
    "properties": {},
    "district_id": ZERO,
    "school_ids": [ZERO],
}

ENROLLMENT: dict[str, Any] = {
    "id": ZERO,
    "created_date": "2021-07-13T17:45:27.674Z",
    "updated_date": "2021-07-13T17:45:27.674Z",
    "start_date": None,
    "end_date": None,
    "role": "teacher",
    "primary": None,
    "state": "active",
    "properties": {},
    "person_id": ZERO,
    "class_id": ZERO,
    "section_id": ZERO,
}

AGENT: dict[str, Any] = {
    "id": ZERO,
    "relationship": "parent",
    "properties": {},
    "observer_id": ZERO,
    "target_id": ZERO,
}

SECTION: dict[str, Any] = {
    "id": ZERO,
    "created_date": "2021-07-13T17:45:27.645Z",
    "updated_date": "2021-07-13T17:45:27.645Z",
    "name": "Section 3",
    "description": None,
    "picture_url": None,
    "state": "active",
    "locale": "en",
    "time_zone": "America/Chicago",
    "properties": {},
    "class_id": ZERO,
}
