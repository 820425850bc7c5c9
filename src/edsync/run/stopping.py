"""Stopping promptly without losing a page: shared by ``run`` and ``backfill``.

A stop request lets workers finish the page they are on; one still stuck in
a network wait after ``STOP_BUDGET`` is abandoned, since nothing of its is
uncommitted. The apply gate is taken last so no page is cut mid-commit.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import structlog

log = structlog.get_logger("edsync.lifecycle")

T = TypeVar("T")

STOP_BUDGET = 8.0  # seconds for workers to finish their page; systemd waits 10 (SPEC 5.6)
COMMIT_BUDGET = 1.5  # then at most this for a page mid-commit


def leave_now(
    gate: threading.Lock, abandoned: list[str], cleanup: Sequence[Callable[[], None]] = ()
) -> None:
    """Exit 0 although worker threads remain, after any commit in flight;
    ``cleanup`` runs once no page can be written any more."""
    committed = gate.acquire(timeout=COMMIT_BUDGET)
    for step in cleanup:
        step()
    log.info("stopped", abandoned=abandoned, page_in_flight=not committed)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class Stopper:
    """The one stopping mechanism of ``run`` and ``backfill`` (arq's ``Worker``
    with or without ``burst``): a stop request, the work in flight, the apply gate.

    Workers run inside ``working(name)``; ``finish`` gives them STOP_BUDGET to
    end their page, then leaves without the stuck ones (``leave_now``).
    ``wake`` is set by the signal handlers and whenever a worker ends.
    """

    def __init__(
        self,
        stop: threading.Event | None = None,
        wake: threading.Event | None = None,
        gate: threading.Lock | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.wake = wake or threading.Event()
        self.gate = gate or threading.Lock()
        self._running: set[str] = set()
        self._changed = threading.Condition()
        self.before_leaving: list[Callable[[], None]] = []

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    @contextmanager
    def on_signals(self, reload: Callable[[], None] | None = None) -> Iterator[Stopper]:
        """The one place edsync's signals are handled, for ``run`` and
        ``backfill`` alike: SIGTERM/SIGINT request a stop (the page in flight
        commits); SIGHUP calls ``reload`` (the daemon's config), if given. The
        previous handlers are back once the block ends."""

        def on_stop(_signum: int, _frame: object) -> None:
            self.request_stop()

        handlers: dict[signal.Signals, Callable[[int, object], None]] = {
            signal.SIGTERM: on_stop,
            signal.SIGINT: on_stop,
        }
        if reload is not None:

            def on_hup(_signum: int, _frame: object) -> None:
                reload()
                self.wake.set()

            handlers[signal.SIGHUP] = on_hup
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    @contextmanager
    def working(self, name: str) -> Iterator[None]:
        with self._changed:
            self._running.add(name)
        try:
            yield
        finally:
            with self._changed:
                self._running.discard(name)
                self._changed.notify_all()
            self.wake.set()

    def finish(self, budget: float = STOP_BUDGET) -> None:
        """After a stop request: wait for the work in flight, or leave without it."""
        with self._changed:
            self._changed.wait_for(lambda: not self._running, budget)
            stuck = sorted(self._running)
        if stuck:
            # Polls blocked in a network wait cannot be interrupted; nothing
            # of theirs is uncommitted, so leave without them.
            leave_now(self.gate, stuck, self.before_leaving)


def run_stoppable(work: Callable[[], T], stopper: Stopper) -> T:
    """Run ``work`` in a thread until it ends; on a stop request, ``Stopper.finish``.

    The stopper's ``wake`` is set by the signal handlers and by the end of the work.
    """
    stop, wake = stopper.stop, stopper.wake
    result: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        with stopper.working("edsync-worker"):
            try:
                result.append(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
                failure.append(exc)
            finally:
                done.set()

    threading.Thread(target=target, name="edsync-worker", daemon=True).start()
    while not done.is_set():
        wake.wait()
        wake.clear()
        if stop.is_set():
            stopper.finish()
    if failure:
        raise failure[0]
    return result[0]


def tune_gc() -> None:
    """Make the cyclic GC cheap for a long drain, without turning it off.

    Parsing a page allocates tens of thousands of dicts and lists, all freed by
    reference counting; with the default threshold the collector runs every
    700 allocations and keeps re-walking them (measured: about 40 % of parse
    time). Objects alive after start-up (modules, config) are frozen out of
    every later collection; cycles still get collected, just less often. (No
    collection first: the little garbage imports leave is not worth the 20 ms
    a full pass costs every start, a caught-up run included.)
    """
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def tune_malloc() -> None:
    """One malloc arena for the process, on glibc.

    glibc gives each thread that meets contention an arena of its own (up to
    eight per core), and memory freed in one is never reused by another: with
    a poll pool of threads taking turns on SQLite connections (each holding its
    parsed schema: a thousand sources' views are about 40 MB) a thousand idle
    sources measured 700 MB RSS, 230 MB with one arena. Python allocates under
    the GIL anyway, so one arena costs no parallelism worth having.
    Elsewhere (musl, macOS) this does nothing.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)
