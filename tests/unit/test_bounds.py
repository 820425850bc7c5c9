"""``bound_time``: the one rule telling a ``--since``/``--until`` id from a time."""

from __future__ import annotations

import datetime as dt

import pytest

from edsync.normalize import bound_time

MARCH = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    "value",
    ["1500", "20260301", "00000000-0000-4000-8000-000000000000", "2026-13-01", "nope", "", " "],
)
def test_digits_and_what_is_not_iso_8601_are_event_ids(value: str) -> None:
    assert bound_time(value) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-03-01", MARCH),
        ("2026-03-01T00:00:00", MARCH),  # no offset: UTC
        ("2026-03-01T00:00:00Z", MARCH),
        ("2026-03-01T01:00:00+01:00", MARCH),
        ("2026-03-01T00:00:00.250Z", MARCH + 0.25),
    ],
)
def test_iso_8601_is_a_time(value: str, seconds: float) -> None:
    assert bound_time(value) == seconds
