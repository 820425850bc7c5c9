"""Where a drain starts (SPEC 2.1, 2.2): a pure decision over the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from edsync.model import Cursor

NEW_MIRROR = "no checkpoint yet: a new mirror starts complete"


@dataclass(frozen=True, slots=True)
class Resume:
    """Go on from ``cursor`` (None: from the feed's start, a kind with no snapshot)."""

    cursor: Cursor | None


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """No checkpoint yet, and the kind can snapshot: a new mirror starts complete."""

    reason: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Events may have been missed since the checkpoint: never skipped silently."""

    reason: str


Start = Resume | Bootstrap | Gap


def plan_start(
    cursor: Cursor | None,
    *,
    gap: str | None,
    age: float | None,
    retention: float | None,
    can_snapshot: bool,
) -> Start:
    """``cursor``, ``gap`` and ``age`` (seconds since the checkpoint was written)
    as the checkpoint holds them; ``retention``: how long the feed keeps events."""
    if cursor is None:
        return Bootstrap(NEW_MIRROR) if can_snapshot else Resume(None)
    if gap is not None:
        return Gap(gap)
    if retention is not None and age is not None and age > retention:
        return Gap(
            f"checkpoint is {age / 86400:.1f} days old, past the feed's retention of "
            f"{retention / 86400:.0f} days: events may have been purged unseen"
        )
    return Resume(cursor)
