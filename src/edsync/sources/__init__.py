"""Feed kinds: the one registry. A new kind is one module (or package) here
exporting its ``KIND`` (an ``edsync.kinds.Kind``), plus one line in ``_KINDS``.

A kind's module is imported only when the kind is first asked for. The
mirror imports no source module: it is handed each source's records
(``source_records``, ``records``) by whoever opens it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from edsync.kinds import NO_RECORDS

if TYPE_CHECKING:
    from edsync.kinds import Entity, Kind, Records
    from edsync.settings import SourceSettings
    from edsync.sources.base import Source

_KINDS: dict[str, str] = {
    "dreamapply": "edsync.sources.dreamapply",
    "edlink": "edsync.sources.edlink",
}

KINDS = tuple(_KINDS)


def kind(name: str) -> Kind:
    """The kind named ``name`` (KeyError for a name no kind has); imports
    that kind's module alone."""
    found: Kind = importlib.import_module(_KINDS[name]).KIND
    return found


def records(name: str) -> Records:
    """The records of the kind named ``name``; none (no views) for a name no
    kind has, such as a test's memory feed."""
    return kind(name).records if name in _KINDS else NO_RECORDS


def source_records(sources: Mapping[str, SourceSettings]) -> dict[str, Records]:
    """Source name → its kind's records: what the mirror's views are made for."""
    return {name: records(settings.kind) for name, settings in sources.items()}


def settings_class(name: str) -> type[SourceSettings]:
    """The kind's settings dataclass."""
    return kind(name).settings


def pattern_problem(name: str, pattern: str) -> str | None:
    """Why a rule's ``event`` cannot match anything this kind emits, or None."""
    check = kind(name).pattern_problem
    return check(pattern) if check is not None else None


def create(settings: SourceSettings) -> Source:
    return kind(settings.kind).create(settings)


class _Views(Mapping[str, "Mapping[str, Entity]"]):
    """Kind → entity → its view, for every kind (each imported when read)."""

    def __getitem__(self, name: str) -> Mapping[str, Entity]:
        return kind(name).records.entities

    def __iter__(self) -> Iterator[str]:
        return iter(_KINDS)

    def __len__(self) -> int:
        return len(_KINDS)


VIEWS: Mapping[str, Mapping[str, Entity]] = _Views()
"""Every kind's views: kind → entity → (plural used in view names, fields)."""
