"""The one small interface every sink kind implements."""

from __future__ import annotations

from typing import Protocol

from edsync.model import Signal


class Sink(Protocol):
    name: str

    def send(self, signal: Signal) -> None:
        """Deliver once; idempotent per signal id. Raises an EdsyncError on failure."""
        ...

    def close(self) -> None: ...
