"""Stopping promptly without losing a page: shared by ``run`` and ``backfill``.

A stop request lets workers finish the page they are on; one still stuck in
a network wait after ``STOP_BUDGET`` is abandoned, since nothing of its is
uncommitted. The apply gate is taken last so no page is cut mid-commit.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

log = structlog.get_logger("edsync.lifecycle")

T = TypeVar("T")

STOP_BUDGET = 8.0  # seconds for workers to finish their page; systemd waits 10 (SPEC 5.6)
COMMIT_BUDGET = 1.5  # then at most this for a page mid-commit


def leave_now(gate: threading.Lock, abandoned: list[str]) -> None:
    """Exit 0 although worker threads remain, after any commit in flight."""
    committed = gate.acquire(timeout=COMMIT_BUDGET)
    log.info("stopped", abandoned=abandoned, page_in_flight=not committed)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_stoppable(
    work: Callable[[], T], stop: threading.Event, wake: threading.Event, gate: threading.Lock
) -> T:
    """Run ``work`` in a thread; on ``stop``, give it STOP_BUDGET, then leave.

    ``wake`` is set by the signal handlers and by the end of the work.
    """
    result: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as is
            failure.append(exc)
        finally:
            done.set()
            wake.set()

    worker = threading.Thread(target=target, name="edsync-worker", daemon=True)
    worker.start()
    while not done.is_set():
        wake.wait()
        wake.clear()
        if stop.is_set() and not done.wait(STOP_BUDGET):
            leave_now(gate, [worker.name])
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
