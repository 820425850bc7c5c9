"""Every journal name of DreamApply's list maps to an entity and an operation."""

from __future__ import annotations

from typing import Any

import pytest

from edsync.errors import InvalidEventError
from edsync.model import Change, Quarantined, RawEvent, Ref
from edsync.normalize import normalize_page
from edsync.settings import HttpUrl, Secret
from edsync.sources.dreamapply.journal import EVENT_KINDS, DreamApplySource, Settings, parse_name

# (name as logged, entity, op, status carried by the name)
JOURNAL_NAMES: list[tuple[str, str, str, str | None]] = [
    ("Applicant registered", "applicant", "created", None),
    ("Applicant was deleted", "applicant", "deleted", None),
    ('Applicant decision: "Accepted"', "applicant", "updated", "Accepted"),
    ("Applicant requested to be forgotten", "applicant", "forgotten", None),
    ("Applicant email was changed", "applicant", "updated", None),
    ("Applicant was transferred to another DreamID identity", "applicant", "updated", None),
    ("Application was created", "application", "created", None),
    ("Application was created by cloning", "application", "created", None),
    ("Application was edited", "application", "updated", None),
    ("Course was added to application", "application", "updated", None),
    ("Course was removed from application", "application", "updated", None),
    ("Application was submitted", "application", "updated", None),
    ("Application was re-submitted", "application", "updated", None),
    ("Application was flagged", "application", "updated", None),
    ("Application was un-flagged", "application", "updated", None),
    ("Application was reopened", "application", "updated", None),
    ("Application was silenced", "application", "updated", None),
    ("Application was un-silenced", "application", "updated", None),
    ("Application was frozen", "application", "updated", None),
    ("Application was defrosted", "application", "updated", None),
    ("Application was migrated", "application", "updated", None),
    ("Application was withdrawn", "application", "updated", None),
    ("Application was closed", "application", "deleted", None),
    ("Application was reverted", "application", "updated", None),
    ("Application was marked as inactive", "application", "updated", None),
    ("Referee was added to an application", "application", "updated", None),
    ("Referee was removed from an application", "application", "updated", None),
    (
        'Application was shared with: "agent@example.org"',
        "application",
        "updated",
        "agent@example.org",
    ),
    ("Application share was revoked", "application", "updated", None),
    ('Offer was edited: "Enrolled"', "offer", "updated", "Enrolled"),
    ('Offer was confirmed: "Conditional"', "offer", "updated", "Conditional"),
    ("Document was uploaded", "document", "created", None),
    ("Document was uploaded to a task", "document", "created", None),
    ("Media was uploaded", "media", "created", None),
    ("Media was added", "media", "created", None),
    ("Media was removed", "media", "deleted", None),
    ("Interview was started", "interview", "created", None),
    ("Interview was completed", "interview", "updated", None),
    ("Interview was evaluated", "interview", "updated", None),
    ("Referee was invited", "referee", "created", None),
    ("Referee was reminded", "referee", "updated", None),
    ("Referee committed reference", "referee", "updated", None),
    ("Invoice was issued", "invoice", "created", None),
    ("Invoice was reminded", "invoice", "updated", None),
    ("Invoice was marked as paid", "invoice", "updated", None),
    ('Task was committed as: "Pending"', "task", "updated", "Pending"),
    ('Task was resolved as: "Done"', "task", "updated", "Done"),
    ("Task was commented", "task", "updated", None),
]

LINKS = {
    "applicant": "/api/applicants/7",
    "application": "/api/applications/21",
    "offer": "/api/applications/21/offers/3",
    "document": "/api/documents/40",
    "media": "/api/media/41",
    "interview": "/api/interviews/42",
    "referee": "/api/referees/43",
    "invoice": "/api/invoices/44",
    "task": "/api/tasks/45",
}
EXPECTED_ID = {k: v.rsplit("/", 1)[1] for k, v in LINKS.items()}


def make_source() -> DreamApplySource:
    settings = Settings(
        name="da",
        kind="dreamapply",
        base_url=HttpUrl("http://127.0.0.1:1"),
        api_key=Secret("X", "k"),
    )
    return DreamApplySource(settings)


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"logged": "2026-06-01T08:00:00+02:00", "event": name, "bind": [], **fields}


def test_the_list_has_48_names_and_the_table_knows_each() -> None:
    assert len(JOURNAL_NAMES) == 48
    assert len(EVENT_KINDS) == 48


@pytest.mark.parametrize(("name", "entity", "op", "status"), JOURNAL_NAMES)
def test_every_journal_name_normalizes(name: str, entity: str, op: str, status: str | None) -> None:
    source = make_source()
    change = source.normalize(RawEvent("10", 10, event(name, **LINKS)))
    assert (change.entity, change.op, change.status) == (entity, op, status)
    assert change.entity_id == EXPECTED_ID[entity]
    assert change.person_id == "7"
    assert change.occurred_at == "2026-06-01T06:00:00+00:00"
    assert change.revive is (name == "Application was reverted")


@pytest.mark.parametrize(
    "name",
    [
        'Offer was edited: "Enrolled"',
        "Offer was edited: Enrolled",
        "Offer was edited: “Enrolled”",
        "Offer was edited:  'Enrolled' ",
    ],
)
def test_status_quotes_are_stripped(name: str) -> None:
    parsed = parse_name(name)
    assert parsed is not None
    assert parsed[1] == "Enrolled"


def test_an_expanded_subject_gives_its_own_id_and_no_record_data() -> None:
    """Records come from reading the resources (SPEC 2.1), not from the item."""
    offer = {"id": 3, "status": "Offered"}
    change = make_source().normalize(
        RawEvent(
            "1",
            1,
            event(
                'Offer was edited: "Enrolled"',
                offer=offer,
                application="/api/v9/applications/21",
                applicant={"id": 7},
            ),
        )
    )
    assert change.entity_id == "3"
    assert change.data is None
    assert not change.touches_record
    assert change.person_id == "7"
    assert change.refresh == (Ref("application", "21", "7"),)


def test_an_applicant_only_event_refreshes_the_applicant() -> None:
    change = make_source().normalize(
        RawEvent("1", 1, event("Applicant email was changed", applicant="/api/v9/applicants/7"))
    )
    assert change.refresh == (Ref("applicant", "7", "7"),)
    assert change.data is None


def test_unknown_name_is_kept_as_entity_unknown() -> None:
    change = make_source().normalize(RawEvent("1", 1, event("Something new", **LINKS)))
    assert isinstance(change, Change)
    assert (change.entity, change.op) == ("unknown", None)
    assert not change.touches_record


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("just a string", "not an object"),
        ({"logged": "2026-06-01T08:00:00+00:00"}, "no `event` name"),
        # No own link and no application or applicant to fall back on (SPEC 2.1).
        (event("Offer was edited: ?", course="/api/courses/3"), "names no offer"),
        (event("Application was edited", application="/api/applications/"), "names no"),
        ({"event": "Application was edited", "application": "/api/applications/1"}, "timestamp"),
        (event("Application was edited", application="x") | {"logged": "yesterday"}, "ISO"),
    ],
)
def test_events_that_cannot_be_normalized_are_quarantined(body: object, reason: str) -> None:
    source = make_source()
    with pytest.raises(InvalidEventError, match=reason):
        source.normalize(RawEvent("1", 1, body))
    (change,) = normalize_page([RawEvent("1", 1, body)], source.normalize)
    assert isinstance(change, Quarantined)
    assert reason in change.reason
    assert change.payload == body
