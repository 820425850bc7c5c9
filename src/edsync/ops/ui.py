"""Terminal output: the backfill progress bar and tables (rich, imported lazily)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from edsync.mirror.ledger import PageResult
from edsync.run.drain import Progress

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgressBar
    from rich.progress import TaskID


class RichProgress(Progress):
    """Events/s and ETA per source, the total from the feed's count (X-Count)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar: RichProgressBar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} ev/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.tasks: dict[str, tuple[TaskID, float, int]] = {}
        self.totals: dict[str, int | None] = {}

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.bar.stop()

    def start(self, source: str, total: int | None) -> None:
        task = self.bar.add_task(source, total=total, rate="-")
        self.tasks[source] = (task, time.perf_counter(), 0)
        self.totals[source] = total

    def advance(self, source: str, result: PageResult) -> None:
        task, started, done = self.tasks[source]
        done += result.received
        self.tasks[source] = (task, started, done)
        rate = done / max(time.perf_counter() - started, 1e-6)
        total = self.totals.get(source)
        if total is not None and done > total:
            # Events appended upstream while draining: the count taken at the
            # start was a floor, so the bar grows instead of overflowing.
            total = self.totals[source] = done
        self.bar.update(task, advance=result.received, total=total, rate=f"{rate:,.0f}")

    def snapshot(self, source: str, entity: str, objects: int) -> None:
        """A bar per snapshotting source: records read so far, by kind (no total:
        the list endpoints do not say how many there are in one request)."""
        key = f"{source} (snapshot)"
        task, rate = self._count(key, objects)
        self.bar.update(task, advance=objects, description=f"{key}: {entity}", rate=f"{rate:,.0f}")

    def refresh(self, source: str, resources: int, queued: int | None = None) -> None:
        """A bar per source reading again what its events named (SPEC 2.1):
        resources read so far (their number is only known as they are queued)."""
        task, rate = self._count(f"{source} (refresh)", resources)
        self.bar.update(task, advance=resources, rate=f"{rate:,.1f}")

    def _count(self, key: str, added: int) -> tuple[TaskID, float]:
        """The open-ended bar ``key`` (made on first use), ``added`` more, and its rate."""
        if key not in self.tasks:
            task = self.bar.add_task(key, total=None, rate="-")
            self.tasks[key] = (task, time.perf_counter(), 0)
        task, started, done = self.tasks[key]
        done += added
        self.tasks[key] = (task, started, done)
        return task, done / max(time.perf_counter() - started, 1e-6)


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
