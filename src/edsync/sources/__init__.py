"""Feed kinds: the one registry. A new kind is one module (or package) here
exporting its ``KIND`` (an ``edsync.kinds.Kind``), plus one line in ``_KINDS``.

A kind's module is imported only when the kind is first asked for. Importing
this registry installs its lookup in ``edsync.kinds``, where the mirror finds
a kind's records by name without importing any source module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from edsync import kinds

if TYPE_CHECKING:
    from edsync.kinds import Entity, Kind
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


kinds.install(kind)


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
