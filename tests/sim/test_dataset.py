"""The simulator's journal generator and query logic, without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from edsync_sim.dataset import EntityTruth, Journal, canonical_name
from edsync_sim.dreamapply import At, BadQueryError, JournalQuery, parse_query, select


def page(journal: Journal, **params: str) -> tuple[int, list[int]]:
    with journal.locked():
        count, positions = select(journal, parse_query(params))
    return count, [p + 1 for p in positions]


def test_generation_is_incremental_and_seeded() -> None:
    grown = Journal(300, seed=3)
    grown.append(200)
    whole = Journal(500, seed=3)
    assert grown.fragments(frozenset({"offer"}), range(500)) == whole.fragments(
        frozenset({"offer"}), range(500)
    )
    assert Journal(50, seed=4).fragments(frozenset(), range(50)) != whole.fragments(
        frozenset(), range(50)
    )


def test_start_sets_the_first_timestamp() -> None:
    journal = Journal(3, start=datetime(2030, 1, 2, 3, 4, 5))
    first = orjson.loads(b"{" + journal.fragments(frozenset(), [0])[0] + b"}")
    assert first["1"]["logged"] == "2030-01-02T03:04:05+00:00"
    assert journal.timestamps[0] == int(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("Offer was edited: Enrolled", 'Offer was edited: "Enrolled"'),
        ('Offer was edited: "Enrolled"', 'Offer was edited: "Enrolled"'),
        ("Offer was confirmed: \u201cEnrolled\u201d", 'Offer was confirmed: "Enrolled"'),
        ("Offer was edited: ?", "Offer was edited: ?"),
        ("Application was created", "Application was created"),
        ("Unknown: thing", "Unknown: thing"),
    ],
)
def test_canonical_name(term: str, expected: str) -> None:
    assert canonical_name(term) == expected


def test_parse_query_defaults_and_caps() -> None:
    assert parse_query({}) == JournalQuery()
    assert parse_query({"limit": "9999", "expand": "offer"}).limit == 512
    assert parse_query({"order": "newest-first"}).newest_first
    since = parse_query({"bySince": "2026-06-01T08:00:00 00:00"}).since
    assert since == At(datetime(2026, 6, 1, 8, tzinfo=UTC).timestamp())
    with pytest.raises(BadQueryError):
        parse_query({"limit": "5_0"})


def test_select_windows_and_names() -> None:
    journal = Journal(400)
    assert page(journal, bySince="399") == (2, [399, 400])
    assert page(journal, bySince="500") == (0, [])
    assert page(journal, bySince="10", byUntil="5") == (0, [])
    count, ids = page(journal, byEvents="Applicant registered", order="newest-first", limit="2")
    assert count > 2
    assert len(ids) == 2
    assert ids[0] > ids[1]


def test_truth_folds_raw_events_too() -> None:
    journal = Journal(0)
    journal.append_raw({"event": "Applicant registered", "applicant": "/api/applicants/5"})
    journal.append_raw({"event": "Application was closed", "application": {"id": 9}})
    journal.append_raw({"event": 'Offer was edited: "Enrolled"', "offer": "/api/v9/offers/4"})
    journal.append_raw({"event": "Applicant requested to be forgotten", "applicant": "/x/5"})
    journal.append_raw("not an object")
    journal.append_raw({"event": "Application was closed"})
    assert journal.truth() == {
        ("applicant", 5): EntityTruth(forgotten=True),
        ("application", 9): EntityTruth(deleted=True),
        ("offer", 4): EntityTruth(status="Enrolled"),
    }
