"""What ``records.typed`` holds for each column type (edsync/kinds.py): the
values the views read, computed once when a record is written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from edsync.kinds import Reader, typed_values
from edsync.sources import VIEWS as KINDS
from edsync.sources import records as typer


def readers(kind: str) -> Mapping[str, tuple[Reader, ...]]:
    return typer(kind).readers


PERSON = readers("edlink")["person"]
ENROLLMENT = readers("edlink")["enrollment"]


def test_each_entity_with_a_view_has_its_readers_and_person_columns_are_not_read() -> None:
    for kind, entities in KINDS.items():
        by_entity = readers(kind)
        assert set(by_entity) == set(entities)
        for entity, (_, fields) in entities.items():
            columns = [f.column for f in fields if f.type != "person"]
            assert [column for column, *_ in by_entity[entity]] == columns
    assert readers("memory") == {}
    assert typer("memory")("offer", {"status": "x"}) is None


@pytest.mark.parametrize(
    ("value", "held"),
    [
        (2026, 2026),
        (-(2**63), -(2**63)),
        (2**63 - 1, 2**63 - 1),
        (2**63, None),
        (1.5, None),
        (2.0, None),
        ("2026", None),
        (True, None),
        ([1], None),
    ],
)
def test_an_integer_is_held_only_when_it_fits_a_bigint(value: Any, held: Any) -> None:
    assert typed_values(PERSON, {"graduation_year": value}).get("graduation_year") == held


@pytest.mark.parametrize(
    ("value", "held"),
    [
        # Forms PostgreSQL reads as they are: kept as the vendor wrote them.
        ("2026-01-02T03:04:05.678Z", "2026-01-02T03:04:05.678Z"),
        ("2014-06-20T11:00:19+00:00", "2014-06-20T11:00:19+00:00"),
        ("2026-01-02 03:04:05", "2026-01-02 03:04:05"),
        ("2026-01-02", "2026-01-02"),
        ("2026-01-02T03:04:05-0530", "2026-01-02T03:04:05-0530"),
        # Other ISO forms Python reads: written in the plain one.
        ("20260102T030405", "2026-01-02T03:04:05"),
        ("2026-01-02T03:04:05.1234567+00:00", "2026-01-02T03:04:05.123456+00:00"),
        # Not a date PostgreSQL could read: nothing.
        ("2026-13-45", None),
        ("-0001-11-30T00:00:00+00:00", None),
        ("0000-00-00 00:00:00", None),
        ("2026-01-02T03:04:05+23:00", None),
        ("soon", None),
        ("", None),
        (1718880019, None),
        (None, None),
    ],
)
def test_a_timestamp_is_held_when_it_is_a_date_postgresql_reads(value: Any, held: Any) -> None:
    got = typed_values(ENROLLMENT, {"start_date": value}).get("start_date")
    assert got == held
    if held is not None:
        assert dt.datetime.fromisoformat(held) == dt.datetime.fromisoformat(value)


def test_booleans_and_text() -> None:
    got = typed_values(
        ENROLLMENT,
        {"primary": True, "role": "teacher", "state": 7, "class_id": {"id": "c"}},
    )
    assert got == {"is_primary": True, "role": "teacher", "state": "7", "class_id": '{"id":"c"}'}
    assert typed_values(ENROLLMENT, {"primary": "yes"}) == {}
    assert typed_values(ENROLLMENT, {"primary": 1}) == {}


def test_a_nested_path_and_a_link_in_either_form() -> None:
    applicant = readers("dreamapply")["applicant"]
    assert typed_values(applicant, {"name": {"given": "Ann"}})["given_name"] == "Ann"
    assert typed_values(applicant, {"name": "Ann"}).get("given_name") is None
    offer = readers("dreamapply")["offer"]
    for link in ("/api/courses/5", "/api/v9/courses/5/", {"id": 5}, {"id": "5"}, 5):
        assert typed_values(offer, {"course": link})["course_id"] == "5", link


def test_the_json_written_is_one_object_by_column() -> None:
    write = typer("dreamapply")
    assert write("offer", {"status": "Enrolled", "priority": 1}) == (
        '{"status":"Enrolled","priority":1}'
    )
    assert write("reference", {"application": "/api/applications/3"}) == ('{"application_id":"3"}')
