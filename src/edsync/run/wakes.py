"""Polls a webhook wakes, coalesced (SPEC 2.1): a pure decision per source
(``Gate``), and a thread-safe table of gates (``Wakes``).

The poll stays the only reader of the feed, so a wake only moves a poll
earlier; how many polls a burst of webhooks costs is decided here:

- Many wakes before a woken poll starts make that one poll.
- A wake during a poll makes exactly one more poll after it (a poll that has
  already read past the event may have started before it was written).
- A woken poll starts at least ``spacing`` seconds after the previous poll
  of the source started, so a steady stream of webhooks costs at most one
  poll per ``spacing``, however fast the polls themselves are.
- A poll that starts for any reason (the interval, a hand-over) takes the
  place of a woken poll still due: the woken one, when its time comes, finds
  its ticket stale and does nothing.

A woken poll is scheduled by the daemon as its own one-off job (its
``ticket`` is the time it is due), so it never collides with the interval
job's no-overlap rule in the scheduler: the gate is what keeps polls of one
source from overlapping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

WAKE_SPACING = 1.0
"""Seconds between the starts of a source's woken polls, at least."""


@dataclass(frozen=True, slots=True)
class Gate:
    """One source's polls as the coalescing sees them (times: a monotonic clock)."""

    running: bool = False
    again: bool = False
    """A wake came while the poll was running: poll once more after it."""
    due: float | None = None
    """A woken poll is scheduled for this time (and this is its ticket)."""
    started: float | None = None
    """When the source's last poll started."""


def _next(gate: Gate, now: float, spacing: float) -> float:
    return now if gate.started is None else max(now, gate.started + spacing)


def on_wake(gate: Gate, now: float, spacing: float = WAKE_SPACING) -> tuple[Gate, float | None]:
    """A webhook arrived: the gate, and when to schedule a woken poll (None: none
    needed, one is running or due already)."""
    if gate.running:
        return replace(gate, again=True), None
    if gate.due is not None:
        return gate, None
    due = _next(gate, now, spacing)
    return replace(gate, due=due), due


def on_start(gate: Gate, now: float, ticket: float | None = None) -> tuple[Gate, bool]:
    """A poll job is about to run (``ticket``: the woken poll's due time, None
    for any other): the gate, and whether it polls."""
    if ticket is not None and ticket != gate.due:
        return gate, False  # a poll started since this one was asked for
    if gate.running:
        return replace(gate, again=True), False  # the running poll goes once more
    return Gate(running=True, started=now), True


def on_finish(gate: Gate, now: float, spacing: float = WAKE_SPACING) -> tuple[Gate, float | None]:
    """A poll ended: the gate, and when to schedule the one more poll a wake
    during it asked for (None: none)."""
    if not gate.again:
        return replace(gate, running=False, again=False), None
    due = _next(gate, now, spacing)
    return replace(gate, running=False, again=False, due=due), due


class Wakes:
    """Every source's gate, for the scheduler's and the listener's threads."""

    def __init__(
        self, spacing: float = WAKE_SPACING, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spacing = spacing
        self.clock = clock
        self.gates: dict[str, Gate] = {}
        self.lock = threading.Lock()

    def wake(self, source: str) -> float | None:
        """When a woken poll of ``source`` is to be scheduled, if one is."""
        with self.lock:
            self.gates[source], due = on_wake(self._gate(source), self.clock(), self.spacing)
        return due

    def start(self, source: str, ticket: float | None = None) -> bool:
        """Whether the poll job of ``source`` (``ticket``: a woken one's) polls now."""
        with self.lock:
            self.gates[source], go = on_start(self._gate(source), self.clock(), ticket)
        return go

    def finish(self, source: str) -> float | None:
        """When one more poll of ``source`` is to be scheduled, if one is."""
        with self.lock:
            self.gates[source], due = on_finish(self._gate(source), self.clock(), self.spacing)
        return due

    def settled(self, source: str) -> bool:
        """Nothing running and nothing due: no poll comes but the interval's."""
        with self.lock:
            gate = self._gate(source)
        return not gate.running and gate.due is None

    def forget(self, source: str) -> None:
        with self.lock:
            self.gates.pop(source, None)

    def _gate(self, source: str) -> Gate:
        return self.gates.get(source) or Gate()
