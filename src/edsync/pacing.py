"""Pacing requests to a per-key quota (DreamApply: 180 a minute), and pausing
for a 429 (SPEC 5.1): pure decisions (``next_start``, ``throttled_until``) and
the ``Pacer`` one HTTP client shares between its threads."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

WINDOW = 60.0
"""The quota's window in seconds: an upstream that counts requests per key per minute."""


def next_start(
    now: float, *, starts: Sequence[float], interval: float, cap: int, paused_until: float
) -> float:
    """The earliest a request may start: after any pause, ``interval`` after the
    last start, and not while the last ``cap`` starts all lie within one window."""
    at = max(now, paused_until)
    if starts:
        at = max(at, starts[-1] + interval)
        if len(starts) >= cap:
            at = max(at, starts[-cap] + WINDOW)
    return at


def throttled_until(now: float, retry_after: float | None, starts: Sequence[float]) -> float | None:
    """After a 429 at ``now``, when the next request may start: once
    ``Retry-After`` has passed, or without one once the window that filled has
    (its oldest start, ascending ``starts``, plus WINDOW). None when no start
    lies in that window (pacing off): the retry backoff alone decides."""
    if retry_after is not None:
        return now + retry_after
    oldest = next((s for s in starts if s + WINDOW > now), None)
    return None if oldest is None else oldest + WINDOW


class Pacer:
    """At most ``per_minute`` request starts in any 60 s window, one every
    ``60 / per_minute`` seconds; ``per_minute = 0`` paces nothing.

    DreamApply counts requests per key per minute: pacing below the quota is
    politer and faster than running into 429s. After a 429 (``throttled``)
    no thread of the client starts a request until the pause has passed.
    """

    burst = 1
    """Requests that may start at once (bench/bootstrap.py reads it)."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        paced = per_minute > 0
        self.interval = WINDOW / per_minute if paced else 0.0
        self.cap = max(1, math.floor(per_minute)) if paced else 0
        # The last ``cap`` starts: all a window may hold. maxlen 0 keeps none.
        self.starts: deque[float] = deque(maxlen=self.cap)
        self.paused_until = -math.inf
        self.clock = clock
        self.sleep = sleep
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Sleep until a request may start and count it as started; returns the time slept."""
        slept = 0.0
        while True:
            with self.lock:
                now = self.clock()
                at = next_start(
                    now,
                    starts=self.starts,
                    interval=self.interval,
                    cap=self.cap,
                    paused_until=self.paused_until,
                )
                if at <= now:
                    self.starts.append(now)
                    return slept
            # Decided again after the sleep: a 429 meanwhile holds this thread too.
            self.sleep(at - now)
            slept += at - now

    def pause_until(self, until: float) -> None:
        """No request starts before ``until`` (on ``clock``); a longer pause stands."""
        with self.lock:
            self.paused_until = max(self.paused_until, until)

    def throttled(self, retry_after: float | None) -> float | None:
        """A 429 came back: pause every thread (``throttled_until``); returns
        the seconds from now until requests may start again, or None."""
        with self.lock:
            now = self.clock()
            until = throttled_until(now, retry_after, self.starts)
            if until is None:
                return None
            self.paused_until = max(self.paused_until, until)
            return max(0.0, self.paused_until - now)
