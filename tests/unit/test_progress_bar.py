"""The backfill progress bar (rich, to a string console)."""

from __future__ import annotations

import io

from rich.console import Console

from edsync.mirror.ledger import PageResult
from edsync.model import Cursor
from edsync.ops.ui import RichProgress


def page(received: int) -> PageResult:
    return PageResult(Cursor("x", received), received, applied=received)


def test_the_bar_never_passes_its_total_when_events_arrive_while_draining() -> None:
    progress = RichProgress(Console(file=io.StringIO(), width=100))
    progress.start("dreamapply", 100)
    for received in (60, 60, 30):  # 50 appended upstream after the count
        progress.advance("dreamapply", page(received))
        (task,) = progress.bar.tasks
        assert task.total is not None
        assert task.completed <= task.total
    assert (task.completed, task.total) == (150, 150)


def test_the_bar_keeps_the_feed_count_while_within_it() -> None:
    progress = RichProgress(Console(file=io.StringIO(), width=100))
    progress.start("dreamapply", 100)
    progress.advance("dreamapply", page(40))
    (task,) = progress.bar.tasks
    assert (task.completed, task.total) == (40, 100)
