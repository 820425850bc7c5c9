"""Learning Hub Event Store sink (SPEC 2.3): settings; delivery comes with rules."""

from __future__ import annotations

from dataclasses import dataclass

from edsync.config import Secret, SinkSettings
from edsync.errors import FatalError, error_for_status
from edsync.sources.http import HttpClient


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(SinkSettings):
    program_id: str
    user_id: str
    api_key: Secret


def probe(settings: SinkSettings) -> str:
    """GET an event id nobody writes: 404 (or 200) proves reachability and credentials."""
    assert isinstance(settings, Settings)
    http = HttpClient(
        f"sink {settings.name!r}",
        settings.base_url,
        auth=(settings.user_id, settings.api_key.reveal()),
        timeout=settings.timeout,
        ca_bundle=settings.ca_bundle,
    )
    try:
        status = http.client.get(f"/events/{settings.program_id}-edsync-check").status_code
    finally:
        http.close()
    if status in (200, 404):
        return f"reachable, credentials accepted (HTTP {status})"
    raise error_for_status(status, f"sink {settings.name!r}") or FatalError(
        f"sink {settings.name!r}: unexpected HTTP {status}"
    )
