"""Run an iterator a bounded number of items ahead, in a thread.

While the applier's transaction runs (SQLite releases the GIL inside its
statements and commits), the next page is fetched, parsed and normalized.
The queue bounds how far ahead the producer may get, so memory stays flat
however long the backlog, and the cursor still only moves on commit: the
consumer commits pages strictly in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")

_POLL = 0.2
"""How often a blocked side looks at the stop flags; not a wait for readiness."""


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_DONE = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` in a daemon thread, at most ``depth`` items ahead
    (``depth=0``: in the caller's thread, one item at a time).

    An exception raised by the producer is re-raised in the consumer after
    the items produced before it, so failures keep their order. ``stop``
    (checked while waiting) ends the iteration early; ``close`` lets the
    producer go without waiting for a request in flight.
    """

    def __init__(
        self,
        items: Callable[[], Iterator[T]],
        *,
        depth: int = 2,
        stop: threading.Event | None = None,
        name: str = "edsync-prefetch",
    ) -> None:
        self._items = items
        self._depth = depth
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._stop = stop
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)

    def __enter__(self) -> Prefetch[T]:
        if self._depth:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[T]:
        if not self._depth:
            yield from self._items()
            return
        while True:
            try:
                item = self._queue.get(timeout=_POLL)
            except queue.Empty:
                if self._stopping():
                    return
                continue
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield cast(T, item)  # the producer puts only items, _Failed and _DONE

    def _stopping(self) -> bool:
        return self._closed.is_set() or (self._stop is not None and self._stop.is_set())

    def _produce(self) -> None:
        items = self._items()
        try:
            for item in items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed over and re-raised by the consumer
            self._put(_Failed(exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        self._put(_DONE)

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
            except queue.Full:
                continue
            return True
        return False
