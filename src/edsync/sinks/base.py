"""The one small interface every sink kind implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Signal:
    """An outbox row, as the publisher hands it to a sink."""

    id: str
    rule: str
    source: str
    event_id: str
    entity: str
    entity_id: str | None
    occurred_at: str | None
    data: dict[str, Any]

    @property
    def event_type(self) -> str:
        return str(self.data.get("event_type") or self.rule)

    @property
    def member(self) -> str | None:
        member = self.data.get("member")
        return member if isinstance(member, str) else None

    @property
    def change(self) -> dict[str, Any]:
        change = self.data.get("change")
        return change if isinstance(change, dict) else {}


class Sink(Protocol):
    name: str

    def send(self, signal: Signal) -> None:
        """Deliver once; idempotent per signal id. Raises an EdsyncError on failure."""
        ...

    def close(self) -> None: ...
