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


def settings_classes() -> dict[str, type[SinkSettings]]:
    return {kind: importlib.import_module(mod).Settings for kind, mod in _KINDS.items()}


def probe(settings: SinkSettings) -> str:
    """One authenticated request, no writes: for ``edsync check``."""
    result: str = importlib.import_module(_KINDS[settings.kind]).probe(settings)
    return result


def create(settings: SinkSettings) -> Sink:
    sink: Sink = importlib.import_module(_KINDS[settings.kind]).create(settings)
    return sink
