"""Feed kinds. A new kind is one module here plus one line in ``_KINDS``.

A kind module exposes ``Settings`` (a ``SourceSettings`` dataclass) and
``create(settings) -> Source``. Modules are imported only when used.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edsync.settings import SourceSettings
    from edsync.sources.base import Source

_KINDS: dict[str, str] = {
    "dreamapply": "edsync.sources.dreamapply.journal",
    "edlink": "edsync.sources.edlink",
}


def _module(kind: str) -> ModuleType:
    return importlib.import_module(_KINDS[kind])


KINDS = tuple(_KINDS)


def settings_class(kind: str) -> type[SourceSettings]:
    """The kind's settings dataclass; imports that kind's module alone."""
    cls: type[SourceSettings] = _module(kind).Settings
    return cls


def pattern_problem(kind: str, pattern: str) -> str | None:
    """Why a rule's ``event`` cannot match anything this kind emits, or None."""
    check = getattr(_module(kind), "pattern_problem", None)
    return check(pattern) if check is not None else None


def create(settings: SourceSettings) -> Source:
    source: Source = _module(settings.kind).create(settings)
    return source
