"""Rules pick out the changes someone must act on (SPEC 3).

A rule is compiled once from its settings; matching happens on the apply
hot path, so the cheap tests (event name, entity, op) run before any path
into the data is followed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edsync.model import Change, json_value

_QUOTES = "\"'“”‘’"  # noqa: RUF001 - DreamApply writes either
MATCH_KEYS = frozenset({"entity", "op"})
OPS = frozenset({"created", "updated", "deleted", "forgotten"})


@dataclass(frozen=True, slots=True)
class EventPattern:
    """``Offer was edited: "Enrolled"``, ``Offer was edited: ?`` or a plain name."""

    head: str
    status: str | None
    wildcard: bool

    @classmethod
    def parse(cls, text: str) -> EventPattern:
        head, sep, rest = text.partition(":")
        if not sep:
            return cls(text.strip(), None, wildcard=False)
        status = rest.strip().strip(_QUOTES).strip()
        return cls(head.strip() + ":", None if status == "?" else status, wildcard=status == "?")

    def matches(self, change: Change) -> bool:
        if self.head.endswith(":"):
            if not change.type.startswith(self.head):
                return False
            return self.wildcard or change.status == self.status
        return change.type == self.head


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    source: str
    event: EventPattern | None
    entity: str | None
    op: str | None
    where: tuple[tuple[tuple[str, ...], Any], ...]
    publish: tuple[str, ...]
    event_type: str
    member: tuple[str, ...] | None

    def matches(self, change: Change) -> bool:
        """Whether the rule fires on ``change`` (a quarantined event never reaches here)."""
        if self.entity is not None and change.entity != self.entity:
            return False
        if self.op is not None and change.op != self.op:
            return False
        if self.event is not None and not self.event.matches(change):
            return False
        if not self.where:
            return True
        context = change_context(change)
        return all(_satisfies(resolve(context, path), want) for path, want in self.where)

    def member_of(self, change: Change) -> str | None:
        """The member the change itself names (a path into its context)."""
        if self.member is None:
            return None
        return member_value(resolve(change_context(change), self.member))

    def member_ref(self, change: Change, person_entity: str | None) -> MemberRef | None:
        """Where the member is read at delivery time, when the rule's path
        starts at the person the change names (``person_entity``: the source's
        entity holding a person's data): that person's current record in the
        mirror, not the event's copy (a notification feed's event carries none).
        None when the member comes from the change itself (``member_of``)."""
        path = self.member
        if path is None or person_entity is None or change.person_id is None:
            return None
        if len(path) < 2 or path[0] != person_entity:
            return None
        return MemberRef(person_entity, change.person_id, path[1:])


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A signal's member to read when it is delivered: the field at ``path`` of
    the record (``entity``, ``id``) of the signal's source. Stored in the
    signal's data as ``member_from`` (``to_json``), so the publisher needs
    nothing but the row."""

    entity: str
    id: str
    path: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "id": self.id, "path": list(self.path)}

    @classmethod
    def from_json(cls, value: Any) -> MemberRef | None:
        """The reference a signal's ``member_from`` holds, or None if it holds none."""
        if not isinstance(value, Mapping):
            return None
        entity, id_, path = value.get("entity"), value.get("id"), value.get("path")
        if not isinstance(entity, str) or not isinstance(id_, str) or not isinstance(path, list):
            return None
        if not path or not all(isinstance(part, str) and part for part in path):
            return None
        return cls(entity, id_, tuple(path))

    @property
    def field(self) -> str:
        return ".".join(self.path)

    def describe(self) -> str:
        """``applicant 7's email``: what a waiting delivery waits for."""
        return f"{self.entity} {self.id}'s {self.field}"

    def read(self, record: Mapping[str, Any]) -> str | None:
        """The member in the record's data, or None when it holds none."""
        return member_value(resolve(record, self.path))


def member_value(value: Any) -> str | None:
    """A member as the sinks send it: a scalar as text; nothing for a missing,
    empty or structured value."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text if text.strip() else None


def signal_id(rule: str, source: str, event_id: str) -> str:
    """Deterministic per (rule, source, event): a retried PUT updates, never duplicates."""
    digest = hashlib.sha256(f"{rule}\x1f{source}\x1f{event_id}".encode()).hexdigest()
    return digest[:32]


def change_context(change: Change) -> dict[str, Any]:
    """What rule paths look into: the event's own fields, and ``data`` as the record got it."""
    data = dict(change.data or {})
    if change.status is not None:
        data["status"] = change.status
    payload = json_value(change.payload)
    if not isinstance(payload, dict):
        payload = {}
    return {
        **payload,
        "data": data,
        "entity": change.entity,
        "entity_id": change.entity_id,
        "op": change.op,
        "type": change.type,
        "status": change.status,
    }


def resolve(context: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = context
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _satisfies(value: Any, want: Any) -> bool:
    """Equality, or membership when either side is a list."""
    if isinstance(value, list):
        wanted = want if isinstance(want, list) else [want]
        return any(item in value for item in wanted)
    if isinstance(want, list):
        return value in want
    return bool(value == want)
