"""The two pagination helpers (``edsync.pages``) over in-memory lists: every
item once, in order; an unreadable item narrowed down to and isolated at
about one request per halving (SPEC 5.3)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edsync.errors import UnreadableJsonError
from edsync.pages import Page, by_cursor, by_link


@dataclass
class Feed:
    """Items 1..count, paged by the id to start from; those in ``unreadable``
    spoil any page that holds them."""

    count: int
    unreadable: set[int] = field(default_factory=set)
    asked: list[tuple[int, int]] = field(default_factory=list)

    def fetch(self, start: int, size: int) -> list[int]:
        self.asked.append((start, size))
        page = list(range(start, min(start + size, self.count + 1)))
        if self.unreadable.intersection(page):
            raise UnreadableJsonError("too deep", text=f"{page}")
        return page

    def isolate(self, start: int, error: UnreadableJsonError) -> int:
        assert error.text == f"[{start}]"  # a page of one: that item alone
        return -start  # how the kind keeps it: marked


def after(item: int) -> int:
    return abs(item) + 1


def read_all(feed: Feed, size: int) -> list[list[int]]:
    return [list(page) for page in by_cursor(feed.fetch, 1, after, size, feed.isolate)]


def test_pages_until_an_empty_one() -> None:
    feed = Feed(25)
    assert read_all(feed, 10) == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert feed.asked == [(1, 10), (11, 10), (21, 10), (26, 10)]  # only empty ends it


def test_an_unreadable_item_is_narrowed_to_and_isolated() -> None:
    feed = Feed(40, {17})
    pages = read_all(feed, 1024)
    assert pages == [list(range(1, 17)), [-17], list(range(18, 41))]
    halving = [(1, 512), (1, 256), (1, 128), (1, 64), (1, 32), (1, 16), (17, 8), (17, 4)]
    assert feed.asked == [(1, 1024), *halving, (17, 2), (17, 1), (18, 1024), (41, 1024)]


def test_without_isolate_an_unreadable_page_fails_the_read() -> None:
    feed = Feed(40, {17})
    with pytest.raises(UnreadableJsonError):
        list(by_cursor(feed.fetch, 1, after, 1024))
    assert feed.asked == [(1, 1024)]


def test_a_page_of_one_is_isolated_at_once() -> None:
    feed = Feed(3, {2})
    assert read_all(feed, 1) == [[1], [-2], [3]]
    assert feed.asked == [(1, 1), (2, 1), (3, 1), (4, 1)]


def test_a_page_that_reads_again_ends_the_narrowing_past_its_window() -> None:
    feed = Feed(40, {17})
    pages = by_cursor(feed.fetch, 1, after, 32, feed.isolate)
    assert next(pages) == list(range(1, 17))  # (1, 32) failed, (1, 16) read
    feed.unreadable.clear()  # fixed upstream while we narrowed
    rest = [list(page) for page in pages]
    assert [item for page in rest for item in page] == list(range(17, 41))
    # The halves of the window it was known to be in, then the full size again.
    assert [size for _, size in feed.asked] == [32, 16, 8, 4, 2, 1, 1, 32, 32]


@settings(deadline=None, max_examples=150)
@given(
    count=st.integers(0, 300),
    size=st.integers(1, 128),
    bad=st.sets(st.integers(1, 300), max_size=6),
)
def test_every_item_once_in_order_and_narrowing_costs_a_log(
    count: int, size: int, bad: set[int]
) -> None:
    unreadable = {b for b in bad if b <= count}
    feed = Feed(count, unreadable)
    items = [item for page in read_all(feed, size) for item in page]
    assert items == [-i if i in unreadable else i for i in range(1, count + 1)]
    plain = math.ceil((count - len(unreadable)) / size) + len(unreadable) + 1
    per_item = math.ceil(math.log2(size)) + 2
    assert len(feed.asked) <= plain + len(unreadable) * per_item


def test_by_link_follows_what_each_page_names() -> None:
    pages = {"a": Page([1, 2], "b"), "b": Page([3], "c"), "c": Page([], None)}
    asked: list[tuple[str, int]] = []

    def fetch(link: str, size: int) -> Page[int, str]:
        asked.append((link, size))
        return pages[link]

    assert [list(p.items) for p in by_link(fetch, "a", 2)] == [[1, 2], [3], []]
    assert asked == [("a", 2), ("b", 2), ("c", 2)]


def test_by_link_isolates_with_what_follows_the_lone_item() -> None:
    # Links name the first item of a page; item 3 cannot be read.
    asked: list[tuple[int, int]] = []

    def fetch(first: int, size: int) -> Page[int, int]:
        asked.append((first, size))
        items = list(range(first, min(first + size, 7)))
        if 3 in items:
            raise UnreadableJsonError("too deep", text=str(first))
        return Page(items, first + size if first + size < 7 else None)

    def isolate(first: int, error: UnreadableJsonError) -> Page[int, int]:
        return Page([-first], first + 1)

    pages = [list(p.items) for p in by_link(fetch, 1, 4, isolate)]
    assert pages == [[1, 2], [-3], [4, 5, 6]]
    assert asked == [(1, 4), (1, 2), (3, 1), (4, 4)]
