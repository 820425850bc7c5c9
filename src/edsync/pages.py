"""Pagination, written once: a list read page after page, either by a cursor
its items give (``by_cursor``: the next page starts after the last item) or
by what each page names (``by_link``: a link, a page number). A kind passes
its own fetch, in its vendor's parameter names; nothing here knows a vendor.

Both narrow a page that holds an item no parser reads (``UnreadableJsonError``,
SPEC 5.3): the same request, a smaller page, halving until the item stands
alone; then ``isolate`` makes it an item of its own (quarantined downstream)
and the list goes on past it at full size. Every narrowed page read on the
way is yielded as it is, so nothing before the item waits for it: one
request per halving, about log2 of the page size in all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

from edsync.errors import UnreadableJsonError

log = structlog.get_logger("edsync.pages")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Page(Generic[T, R]):
    """One page's items, and the request for the page after it (None: it was
    the last)."""

    items: Sequence[T]
    following: R | None


class _Narrowing:
    """The page size to ask for: the full one, or, while an unreadable item is
    known to lie within the next ``window`` items, half of that window."""

    def __init__(self, size: int) -> None:
        self.full = max(1, size)
        self.window: int | None = None

    @property
    def size(self) -> int:
        return self.full if self.window is None else max(1, self.window // 2)

    def failed(self, asked: int, error: UnreadableJsonError) -> None:
        self.window = asked
        # The error names the source: these helpers know none.
        log.info("page_narrowed", size=asked, next_size=self.size, error=str(error))

    def read(self, items: int) -> None:
        if self.window is not None:
            self.window -= items
            if self.window <= 0:  # read past it after all: the page changed upstream
                self.window = None

    def isolated(self) -> None:
        self.window = None


def by_link(
    fetch: Callable[[R, int], Page[T, R]],
    first: R,
    size: int = 1,
    isolate: Callable[[R, UnreadableJsonError], Page[T, R]] | None = None,
) -> Iterator[Page[T, R]]:
    """Each page from ``first`` on, following what each page names.

    ``fetch(request, size)`` reads one page of at most ``size`` items (a list
    whose pages have no size ignores it). ``isolate(request, error)`` makes
    the page of one item that ``fetch`` could not read into a page: the item,
    as the kind keeps one it cannot read, and what follows it. Without
    ``isolate`` an unreadable page fails the read.
    """
    request: R | None = first
    narrowing = _Narrowing(size)
    while request is not None:
        asked = narrowing.size
        try:
            page = fetch(request, asked)
        except UnreadableJsonError as exc:
            if isolate is None:
                raise
            if asked > 1:
                narrowing.failed(asked, exc)
                continue
            log.warning("item_isolated", error=str(exc))
            page = isolate(request, exc)
            narrowing.isolated()
        else:
            narrowing.read(len(page.items))
        request = page.following
        yield page
        del page  # not held while the next page is fetched: one page in memory


def by_cursor(
    fetch: Callable[[R, int], Sequence[T]],
    start: R,
    after: Callable[[T], R],
    size: int,
    isolate: Callable[[R, UnreadableJsonError], T] | None = None,
) -> Iterator[Sequence[T]]:
    """Each non-empty page from ``start`` on; the next starts ``after`` the last
    item of the one before. Only an empty page is the end (a server may cap a
    page silently, so a short one proves nothing).

    ``fetch(cursor, size)``: the items from ``cursor``, at most ``size``;
    ``isolate(cursor, error)``: the one item ``fetch`` could not read, as the
    kind keeps one it cannot read.
    """

    def page(cursor: R, asked: int) -> Page[T, R]:
        items = fetch(cursor, asked)
        return Page(items, after(items[-1]) if items else None)

    def alone(cursor: R, exc: UnreadableJsonError) -> Page[T, R]:
        assert isolate is not None  # only passed on when given
        item = isolate(cursor, exc)
        return Page((item,), after(item))

    for found in by_link(page, start, size, alone if isolate is not None else None):
        if found.items:
            yield found.items
        del found  # as in by_link: not held while the next page is fetched
