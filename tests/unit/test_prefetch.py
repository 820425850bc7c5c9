"""The bounded read-ahead the drain uses: order, failures, stopping."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from edsync.run.prefetch import Prefetch


def numbers(count: int) -> Iterator[int]:
    yield from range(count)


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_items_arrive_in_order(depth: int) -> None:
    with Prefetch(lambda: numbers(50), depth=depth) as items:
        assert list(items) == list(range(50))


def test_a_failure_comes_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("page 3 is malformed")

    seen: list[int] = []
    with Prefetch(failing, depth=2) as items, pytest.raises(ValueError, match="page 3"):
        seen.extend(items)
    assert seen == [1, 2]


def test_stop_ends_the_iteration_while_the_producer_waits() -> None:
    release = threading.Event()
    stop = threading.Event()

    def blocked() -> Iterator[int]:
        yield 1
        release.wait()  # a request that never answers
        yield 2

    with Prefetch(blocked, depth=2, stop=stop) as items:
        got = []
        for item in items:
            got.append(item)
            stop.set()
    release.set()
    assert got == [1]


def test_closing_releases_a_producer_blocked_on_a_full_queue() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    with Prefetch(endless, depth=1) as items:
        assert next(iter(items)) == 0
    assert closed.wait(timeout=5)
