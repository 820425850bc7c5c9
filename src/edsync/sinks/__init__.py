"""Sink kinds, registered like sources: one module plus one line."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edsync.settings import SinkSettings
    from edsync.sinks.base import Sink

_KINDS: dict[str, str] = {
    "learninghub": "edsync.sinks.learninghub",
    "webhook": "edsync.sinks.webhook",
}


KINDS = tuple(_KINDS)


def settings_class(kind: str) -> type[SinkSettings]:
    """The kind's settings dataclass; imports that kind's module alone."""
    cls: type[SinkSettings] = importlib.import_module(_KINDS[kind]).Settings
    return cls


def probe(settings: SinkSettings) -> str:
    """One authenticated request, no writes: for ``edsync check``."""
    result: str = importlib.import_module(_KINDS[settings.kind]).probe(settings)
    return result


def create(settings: SinkSettings) -> Sink:
    sink: Sink = importlib.import_module(_KINDS[settings.kind]).create(settings)
    return sink
