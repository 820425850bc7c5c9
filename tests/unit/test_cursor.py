from __future__ import annotations

import pytest

from edsync.model import Cursor
from edsync.normalize import CursorRegressionError, advance


def test_advance_from_nothing_takes_the_new_cursor() -> None:
    assert advance(None, Cursor("5", 5)) == Cursor("5", 5)


def test_advance_forward_and_in_place() -> None:
    assert advance(Cursor("5", 5), Cursor("9", 9)) == Cursor("9", 9)
    assert advance(Cursor("9", 9), Cursor("9", 9)) == Cursor("9", 9)


def test_advance_refuses_to_go_backwards() -> None:
    with pytest.raises(CursorRegressionError, match="from 9 to 4"):
        advance(Cursor("9", 9), Cursor("4", 4))


# -- a snapshot's stored progress, read by a later edsync ---------------------------


def test_snapshot_progress_reads_the_unversioned_form_and_ignores_unknown_fields() -> None:
    from edsync.mirror.checkpoints import SnapshotProgress, parse_progress

    old = b'{"id": "s1", "reason": "bootstrap", "cursor_value": "9", "cursor_position": 9}'
    assert parse_progress(old) == SnapshotProgress("s1", "bootstrap", "9", 9)
    newer_field = (
        b'{"version": 1, "id": "s1", "reason": "gap", "cursor_value": "9",'
        b' "cursor_position": 9, "resume": "people", "pages": 3}'
    )
    assert parse_progress(newer_field) == SnapshotProgress("s1", "gap", "9", 9, "people")


@pytest.mark.parametrize(
    "stored",
    [
        b'{"version": 2, "id": "s1", "reason": "gap", "cursor_value": "9", "cursor_position": 9}',
        b'{"id": "s1", "reason": "gap"}',
        b'{"id": "s1", "reason": "gap", "cursor_value": "9", "cursor_position": "nine"}',
        b"[1, 2]",
        b"{not json",
    ],
    ids=["newer-version", "missing-field", "bad-number", "not-an-object", "not-json"],
)
def test_a_snapshot_progress_it_cannot_read_starts_the_snapshot_over(stored: bytes) -> None:
    from edsync.mirror.checkpoints import parse_progress

    assert parse_progress(stored) is None
