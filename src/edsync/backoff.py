"""Every backoff schedule edsync keeps, side by side (pure functions).

- An HTTP attempt retried within one poll (``Backoff``: stamina's parameters).
- A failing source's next poll (``next_delay``).
- A failing delivery's next attempt (``next_attempt``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from edsync.errors import AuthError, ForeignOriginError, RefusedError


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retries of one request within ``retry_for`` (SPEC 5.1): exponential
    from ``initial`` seconds, capped at ``maximum``, with up to ``jitter`` added."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0


MAX_AUTH_BACKOFF = 3600.0


def next_delay(exc: BaseException, interval: float, failures: int) -> float:
    """How long a failing source waits before its next poll.

    A refused credential, a request the upstream refuses by an error code, or
    an answer that sends us to another origin backs off exponentially (it will
    not fix itself soon, and hammering it may lock the key); a Retry-After is
    never undercut.
    """
    delay = interval
    if isinstance(exc, AuthError | RefusedError | ForeignOriginError):
        delay = min(interval * 2 ** max(failures - 1, 0), max(interval, MAX_AUTH_BACKOFF))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay


BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 3600.0  # after ~12 failures an attempt an hour (30-60 min with jitter)


def delivery_backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds before delivery attempt ``attempts + 1``: doubling, capped, then jittered."""
    base = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** max(attempts - 1, 0))
    return base * (0.5 + rng() / 2)


def next_attempt(
    now: float, deadline: float, attempts: int, retry_after: float | None = None
) -> float | None:
    """When to try a delivery again after failed attempt ``attempts``, or None
    once the budget is spent. The backoff is clipped to the deadline, so the
    last attempt falls when the budget ends; a Retry-After is honoured even past it."""
    if now >= deadline:
        return None
    return max(min(now + delivery_backoff(attempts), deadline), now + (retry_after or 0.0))
