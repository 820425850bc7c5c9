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
